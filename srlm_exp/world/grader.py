"""Deterministic ground-truth grader following the paper's additive 5-point rubric.

It stands in for human judgment: scores are computed from the true answer, ``response_with_score``
synthesises responses of any target score, and ``judgment`` writes the justification a good judge
would give (the correct answer first, then what the response did, then the score): the EFT targets.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from srlm_exp.data.seed_data import JudgmentReading

from .tasks import FAMILIES, Task, normalize_ws, parse_instruction

__all__ = [
    "Grade", "canonical_response", "extract_answer", "grade_task", "grade", "response_with_score",
    "judgment", "read_judgment", "JUDGMENT_PHRASES", "FILLERS",
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

# What a judgment says about the response, by score: the correct answer comes first (the judge works it
# out), then the response's own answer where it is wrong, then the score.
JUDGMENT_PHRASES: dict[int, str] = {
    0: "The response does not answer the question.",
    1: "The response says {stated}, which is wrong.",
    2: "The response says {stated}, which is close but wrong.",
    3: "The response is correct but not in the expected form.",
    4: "The response is correct but adds extra text.",
    5: "The response is correct and exact.",
}


@dataclass(frozen=True)
class Grade:
    """Rubric score 0-5, whether the answer is exactly right, the five criteria, and the task family."""

    score: int
    correct: bool
    criteria: tuple[bool, bool, bool, bool, bool]
    family: str = ""


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
        lambda: pred is not None and family.close(task, pred),
        lambda: pred == truth,
        lambda: _well_formed(response),
        lambda: normalize_ws(response) == canonical_response(task),
    )
    criteria: list[bool] = []
    ok = True
    for check in checks:
        ok = ok and bool(check())  # short-circuit: later checks assume earlier ones hold
        criteria.append(ok)
    return Grade(score=sum(criteria), correct=criteria[2], criteria=tuple(criteria), family=task.family)  # type: ignore[arg-type]


def grade(instruction: str, response: str) -> Grade | None:
    """Grade a response to a free-text instruction; None when the instruction is ungradable."""
    task = parse_instruction(instruction)
    return None if task is None else grade_task(task, response)


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
        return f"{ANSWER_PREFIX} {family.near_miss(rng, task)}."
    if score == 1:
        return f"{ANSWER_PREFIX} {family.random_answer(rng, task)}."
    if score == 0:
        if rng.random() < 0.4:
            return rng.choice(_CHATTER)
        other = FAMILIES[rng.choice([n for n in FAMILIES if n != task.family])]
        return f"{ANSWER_PREFIX} {other.random_answer(rng, other.sample(rng))}."
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


def judgment(task: Task, response: str, grade: Grade | None = None) -> str:
    """The justification of a good judge, ending in ``Score: k``: the correct answer, what the response
    did, the score (e.g. "The correct answer is t a c. The response says t a x, which is close but
    wrong. Score: 2")."""
    g = grade or grade_task(task, response)
    stated = extract_answer(response) or ""
    return f"The correct answer is {task.answer}. {JUDGMENT_PHRASES[g.score].format(stated=stated)} Score: {g.score}"


_STATED_TRUTH_RE = re.compile(r"The correct answer is (.*?)\.(?:\s|$)")
_QUOTED_RE = re.compile(r"The response says (.*?), which")


def read_judgment(task: Task, response: str, text: str) -> JudgmentReading:
    """What a judgment in the world's format got right before its score (judgment() writes the target):
    `states_answer`, whether the correct answer it states is the true one (False when it states none);
    `quotes_response`, whether the answer it quotes from the response is the response's own (None when it
    quotes none: it quotes only answers it calls wrong). A judge whose scores are noise shows here why."""
    stated = _STATED_TRUTH_RE.search(text)
    quoted = _QUOTED_RE.search(text)
    return {"states_answer": stated is not None and normalize_ws(stated.group(1)) == normalize_ws(task.answer),
            "quotes_response": None if quoted is None
            else normalize_ws(quoted.group(1)) == (extract_answer(response) or "")}
