"""Deterministic ground-truth grader following the paper's additive 5-point rubric.

It stands in for human judgment: scores are computed from the true answer, and
``response_with_score`` synthesises responses of any target score for EFT data.
"""
from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass

from .tasks import FAMILIES, Task, normalize_ws, parse_instruction

__all__ = [
    "Grade", "canonical_response", "extract_answer", "levenshtein", "similarity",
    "grade_task", "grade", "response_with_score", "justification", "FILLERS",
]

ANSWER_PREFIX = "The answer is"
_ANSWER_RE = re.compile(r"The answer is([^.]*)")
MAX_EXTRA_WORDS = 12  # "slight extra text" allowed by criterion 4

FILLERS: tuple[str, ...] = (
    "I hope this helps.", "Happy to help.", "Let me know if you need more.",
    "That was a nice question.", "Good luck!", "Sure.", "Here you go.",
)
_CHATTER: tuple[str, ...] = (
    "I do not know.", "Let me think about it.", "What a nice day!", "Hello there!",
    "I like this question.", "Please ask again.",
)

_JUSTIFICATIONS: dict[int, str] = {
    0: "The response does not address the question. Score: 0",
    1: "Relevant, but the answer is far from correct. Score: 1",
    2: "Relevant and close, but the answer is not correct. Score: 2",
    3: "Correct answer, but not stated in the expected form. Score: 3",
    4: "Correct and in the expected form, but with extra text. Score: 4",
    5: "Correct and exact, in the expected form, with nothing extra. Score: 5",
}


@dataclass(frozen=True)
class Grade:
    """Rubric score 0-5, whether the answer is exactly right, and the five criteria."""

    score: int
    correct: bool
    criteria: tuple[bool, bool, bool, bool, bool]


def canonical_response(task: Task) -> str:
    """The impeccable response: ``The answer is {answer}.``"""
    return f"{ANSWER_PREFIX} {task.answer}."


def extract_answer(response: str) -> str | None:
    """The answer stated in ``response`` (first ``The answer is X.``, else the whole text)."""
    m = _ANSWER_RE.search(response)
    if m is not None:
        pred = normalize_ws(m.group(1))
    else:
        pred = normalize_ws(response)
        if pred.endswith("."):
            pred = pred[:-1].rstrip()
    return pred or None


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insert/delete/substitute, unit costs)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def similarity(pred: str, truth: str) -> float:
    """1 - edit distance / max length, on the strings with all spaces removed."""
    a, b = pred.replace(" ", ""), truth.replace(" ", "")
    longest = max(len(a), len(b))
    return 1.0 if longest == 0 else 1.0 - levenshtein(a, b) / longest


def _well_formed(response: str) -> bool:
    """Criterion 4: one ``The answer is …`` sentence, and at most slight extra text."""
    if response.count(ANSWER_PREFIX) != 1:
        return False
    m = _ANSWER_RE.search(response)
    assert m is not None
    rest = response[: m.start()] + " " + response[m.end():].removeprefix(".")
    return len(rest.split()) <= MAX_EXTRA_WORDS


def grade_task(task: Task, response: str) -> Grade:
    """Grade ``response`` against ``task``; criterion k counts only if 1..k-1 hold."""
    family = FAMILIES[task.family]
    pred = extract_answer(response)
    truth = normalize_ws(task.answer)
    checks = (
        lambda: pred is not None and family.answer_type_ok(pred),
        lambda: similarity(pred, truth) >= 0.5,
        lambda: pred == truth,
        lambda: _well_formed(response),
        lambda: normalize_ws(response) == canonical_response(task),
    )
    criteria: list[bool] = []
    ok = True
    for check in checks:
        ok = ok and bool(check())  # short-circuit: later checks assume earlier ones hold
        criteria.append(ok)
    return Grade(score=sum(criteria), correct=criteria[2], criteria=tuple(criteria))  # type: ignore[arg-type]


def grade(instruction: str, response: str) -> Grade | None:
    """Grade a response to a free-text instruction; None when the instruction is ungradable."""
    task = parse_instruction(instruction)
    return None if task is None else grade_task(task, response)


def _char_edit(rng: random.Random, answer: str) -> str:
    """One random same-class character substitution or insertion (keeps the answer's shape)."""
    positions = [i for i, c in enumerate(answer) if c != " "]
    i = rng.choice(positions)
    c = answer[i]
    pool = (string.digits if c.isdigit() else
            string.ascii_uppercase if c.isupper() else string.ascii_lowercase)
    new = rng.choice(pool.replace(c, ""))
    if rng.random() < 0.85:
        return answer[:i] + new + answer[i + 1:]
    # Insertion; spaced-letter answers need the separator too.
    sep = " " if " " in answer and not c.isdigit() else ""
    j = i + rng.choice((0, 1))
    return answer[:j] + (new + sep if j == i else sep + new) + answer[j:]


def _candidate(task: Task, score: int, rng: random.Random) -> str:
    family = FAMILIES[task.family]
    canon = canonical_response(task)
    if score == 5:
        return canon
    if score == 4:
        filler = rng.choice(FILLERS)
        return f"{canon} {filler}" if rng.random() < 0.7 else f"{filler} {canon}"
    if score == 3:
        return task.answer + rng.choice(("", "."))
    if score == 2:
        near = family.near_misses(task.answer)
        wrong = rng.choice(near) if near else _char_edit(rng, task.answer)
        return f"{ANSWER_PREFIX} {wrong}."
    if score == 1:
        return f"{ANSWER_PREFIX} {family.random_answer(rng, task)}."
    if score == 0:
        if rng.random() < 0.4:
            return rng.choice(_CHATTER)
        other = FAMILIES[rng.choice([n for n in FAMILIES if n != task.family])]
        return f"{ANSWER_PREFIX} {other.random_answer(rng, task)}."
    raise ValueError(f"score must be in 0..5, got {score}")


def response_with_score(task: Task, score: int, rng: random.Random, max_tries: int = 200) -> str:
    """Synthesise a response to ``task`` whose grade is exactly ``score`` (0..5)."""
    if not 0 <= score <= 5:
        raise ValueError(f"score must be in 0..5, got {score}")
    for _ in range(max_tries):
        response = _candidate(task, score, rng)
        if grade_task(task, response).score == score:
            return response
    raise RuntimeError(f"could not synthesise a score-{score} response for {task!r}")


def justification(score: int) -> str:
    """Short deterministic judge justification for ``score``, ending with ``Score: {score}``."""
    return _JUSTIFICATIONS[score]
