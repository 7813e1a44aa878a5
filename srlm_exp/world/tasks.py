"""Task families of the embedded instruction world: templated instructions with a computed answer.

Letter content is written with spaces between letters (``c a t``) so a whitespace-splitting
tokenizer sees single letters; numbers are plain digits (the tokenizer splits them).

The families were chosen by measurement (docs/embedded_world.md): a ~2M-parameter model trained for a
few minutes learns some of them almost perfectly, some halfway, and some hardly, so M1 is
half-competent and the self-rewarding iterations have room to improve. Answers are short (a number, a
letter, a word, a few letters). Each family also says which wrong answers are *close* (the rubric's
second point: a substantial part of the question addressed), and how to write one.
"""
from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

__all__ = [
    "Task", "SlotType", "TaskFamily", "FAMILIES", "WORDS", "ORDINALS",
    "sample_task", "parse_instruction", "normalize_ws", "spaced",
]


@dataclass(frozen=True)
class Task:
    """One instruction of a family, its exact true answer string, and the slot values it was made of."""

    family: str
    instruction: str
    answer: str
    slots: tuple[tuple[str, Any], ...] = ()

    def value(self, name: str) -> Any:
        return dict(self.slots)[name]


def normalize_ws(text: str) -> str:
    """Collapse every whitespace run to one space and strip the ends."""
    return " ".join(text.split())


def spaced(word: str) -> str:
    """``"cat"`` -> ``"c a t"``."""
    return " ".join(word)


# 40 short words; each has a neighbour in the list at edit distance 1, so a near-miss answer
# that is itself a list word always exists (needed for the kth_word score-2 responses).
WORDS: tuple[str, ...] = (
    "cat", "car", "cap", "hat", "hot", "dot", "dog", "log", "sun", "run",
    "fun", "bun", "red", "bed", "bad", "bag", "big", "pig", "pin", "pen",
    "ten", "tan", "man", "map", "box", "fox", "six", "fix", "cup", "pup",
    "book", "look", "cook", "moon", "moan", "tree", "free", "fish", "dish", "wish",
)
_WORD_SET = frozenset(WORDS)
ORDINALS: tuple[str, ...] = ("first", "second", "third", "fourth", "fifth")

_NUM = r"(?:0|[1-9][0-9]{0,2})"  # no leading zeros: "07" is not a canonical number here
_INT_RE = re.compile(r"0|[1-9][0-9]*")
_LETTER_RE = re.compile(r"[a-z]")
_CAPITAL_RE = re.compile(r"[A-Z]")
_LOWER_SPACED_RE = re.compile(r"[a-z](?: [a-z])*")
_UPPER_SPACED_RE = re.compile(r"[A-Z](?: [A-Z])*")
_NUM_LIST_RE = re.compile(r"(?:0|[1-9][0-9]*)(?: (?:0|[1-9][0-9]*))*")


@dataclass(frozen=True)
class SlotType:
    """A template slot: the regex it matches, how to read it and how to write it."""

    regex: str
    parse: Callable[[str], Any]  # returns None when the text is not a valid value
    render: Callable[[Any], str]


def _parse_words(text: str) -> tuple[str, ...] | None:
    words = tuple(text.split(" "))
    return words if all(w in _WORD_SET for w in words) else None


SLOT_TYPES: dict[str, SlotType] = {
    "letters": SlotType(r"[a-z](?: [a-z])*", lambda s: s.replace(" ", ""), spaced),
    "letter": SlotType(r"[a-z]", lambda s: s, lambda v: v),
    "num": SlotType(_NUM, int, str),
    "nums": SlotType(rf"{_NUM}(?: {_NUM})+", lambda s: tuple(int(x) for x in s.split(" ")),
                     lambda v: " ".join(map(str, v))),
    "words": SlotType(r"[a-z]+(?: [a-z]+)+", _parse_words, " ".join),
    "ordinal": SlotType("|".join(ORDINALS), lambda s: ORDINALS.index(s) + 1,
                        lambda k: ORDINALS[k - 1]),
}

_FMT = string.Formatter()


def _compile_template(template: str, slots: Mapping[str, str]) -> re.Pattern[str]:
    """Template -> anchored regex: literal parts escaped (case-insensitive), slots typed.

    A final ``.``/``?``/``!`` is optional so an instruction missing it still parses.
    """
    parts = []
    pieces = list(_FMT.parse(template))
    for i, (literal, field, _spec, _conv) in enumerate(pieces):
        if literal:
            tail = ""
            if i == len(pieces) - 1 and field is None and literal[-1] in ".?!":
                literal, tail = literal[:-1], "[.?!]?"
            if literal:
                parts.append(f"(?i:{re.escape(literal)})")
            parts.append(tail)
        if field is not None:
            parts.append(f"(?P<{field}>{SLOT_TYPES[slots[field]].regex})")
    return re.compile(r"^\s*" + "".join(parts) + r"\s*$")


class TaskFamily:
    """A family: templates, a slot sampler, a solver, the type check of its answers, and which wrong
    answers are close to the true one (with a way to write such a near miss)."""

    def __init__(
        self,
        name: str,
        templates: Sequence[str],
        slots: Mapping[str, str],
        draw: Callable[[random.Random], dict[str, Any]],
        solve: Callable[[dict[str, Any]], str | None],
        answer_ok: Callable[[str], Any],
        random_answer: Callable[[random.Random, "Task"], str],
        close: Callable[["Task", str], bool],
        near_miss: Callable[[random.Random, "Task"], str],
    ) -> None:
        self.name = name
        self.templates: tuple[str, ...] = tuple(templates)
        self.slots = dict(slots)
        self._draw = draw
        self._solve = solve
        self._answer_ok = answer_ok
        self._random_answer = random_answer
        self._close = close
        self._near_miss = near_miss
        self._patterns = tuple(_compile_template(t, self.slots) for t in self.templates)

    def __repr__(self) -> str:
        return f"TaskFamily({self.name!r}, {len(self.templates)} templates)"

    def _task(self, text: str, values: dict[str, Any]) -> "Task | None":
        answer = self._solve(values)
        return None if answer is None else Task(self.name, text, answer, tuple(sorted(values.items())))

    def sample(self, rng: random.Random) -> Task:
        """Draw slot values and a template; return the task with its computed answer."""
        values = self._draw(rng)
        template = rng.choice(self.templates)
        text = template.format(**{k: SLOT_TYPES[self.slots[k]].render(v) for k, v in values.items()})
        task = self._task(text, values)
        assert task is not None, (self.name, values)
        return task

    def parse(self, instruction: str) -> Task | None:
        """Recognise one of this family's templates and recompute the answer; else None."""
        text = normalize_ws(instruction)
        for pattern in self._patterns:
            m = pattern.match(text)
            if m is None:
                continue
            values = {k: SLOT_TYPES[self.slots[k]].parse(v) for k, v in m.groupdict().items()}
            if any(v is None for v in values.values()):
                continue
            task = self._task(text, values)
            if task is not None:
                return task
        return None

    def answer_type_ok(self, pred: str) -> bool:
        """Is ``pred`` (whitespace-normalised) an answer of this family's kind?"""
        return bool(pred) and bool(self._answer_ok(normalize_ws(pred)))

    def random_answer(self, rng: random.Random, task: Task) -> str:
        """A random answer of the right type (usually wrong) for ``task``."""
        return self._random_answer(rng, task)

    def close(self, task: Task, pred: str) -> bool:
        """Is the (type-correct, whitespace-normalised) answer ``pred`` the true one or close to it?"""
        return pred == task.answer or bool(self._close(task, pred))

    def near_miss(self, rng: random.Random, task: Task) -> str:
        """A wrong answer of the right type that is close to the true one."""
        return self._near_miss(rng, task)


# ---------------------------------------------------------------- family definitions

_LOWER = string.ascii_lowercase


def _letters(rng: random.Random, lo: int, hi: int) -> str:
    return "".join(rng.choice(_LOWER) for _ in range(rng.randint(lo, hi)))


def _int(pred: str) -> int | None:
    return int(pred) if _INT_RE.fullmatch(pred) else None


def _off_by_one(task: Task, pred: str) -> bool:
    p = _int(pred)
    return p is not None and abs(p - int(task.answer)) == 1


def _adjacent_letter(task: Task, pred: str) -> bool:
    return len(pred) == 1 and abs(ord(pred.lower()) - ord(task.answer.lower())) == 1 and pred.isupper() == task.answer.isupper()


def _neighbour_letter(rng: random.Random, task: Task) -> str:
    c = task.answer
    base = "A" if c.isupper() else "a"
    steps = [d for d in (-1, 1) if 0 <= ord(c) - ord(base) + d < 26]
    return chr(ord(c) + rng.choice(steps))


def _neighbour_int(rng: random.Random, task: Task) -> str:
    t = int(task.answer)
    return str(rng.choice([t - 1, t + 1]) if t > 0 else t + 1)


def _letters_similar(task: Task, pred: str) -> bool:
    """Spaced-letter answers: at least half of the letters right (edit similarity >= 0.5)."""
    return _similarity(pred.replace(" ", ""), task.answer.replace(" ", "")) >= 0.5


def _similarity(a: str, b: str) -> float:
    longest = max(len(a), len(b))
    if longest == 0:
        return 1.0
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return 1.0 - prev[-1] / longest


def _edit_letters(rng: random.Random, task: Task) -> str:
    """One letter of a spaced-letter answer changed (keeps its case and length)."""
    letters = task.answer.split(" ")
    i = rng.randrange(len(letters))
    pool = _LOWER.upper() if letters[i].isupper() else _LOWER
    letters[i] = rng.choice(pool.replace(letters[i], ""))
    return " ".join(letters)


def _one_of_the_others(name: str) -> Callable[[Task, str], bool]:
    """Close = another element of the list in the question (the right kind of thing, picked wrong)."""
    def close(task: Task, pred: str) -> bool:
        items = [str(x) for x in task.value(name)]
        return pred in items and pred != task.answer
    return close


def _other_element(name: str) -> Callable[[random.Random, Task], str]:
    def near(rng: random.Random, task: Task) -> str:
        return rng.choice([str(x) for x in task.value(name) if str(x) != task.answer])
    return near


def _draw_two(rng: random.Random) -> dict[str, Any]:
    a, b = rng.sample(range(100), 2)
    return {"a": a, "b": b}


def _draw_three(rng: random.Random) -> dict[str, Any]:
    return {"nums": tuple(rng.sample(range(100), 3))}


def _draw_kth(rng: random.Random) -> dict[str, Any]:
    return {"ordinal": rng.randint(1, 3), "words": tuple(rng.sample(WORDS, 3))}


def _int_not(rng: random.Random, task: Task, exclude: set[int], hi: int = 99) -> str:
    while True:
        x = rng.randint(0, hi)
        if x not in exclude:
            return str(x)


_families = [
    # --- learned in a few hundred steps ---------------------------------------------------------------
    TaskFamily(
        "length",
        ("How many letters are in {letters}?", "Count the letters in {letters}.",
         "What is the length of the word {letters}?"),
        {"letters": "letters"},
        lambda rng: {"letters": _letters(rng, 2, 7)},
        lambda v: str(len(v["letters"])),
        _INT_RE.fullmatch,
        lambda rng, t: str(rng.randint(1, 9)),
        _off_by_one,
        _neighbour_int,
    ),
    TaskFamily(
        "first_letter",
        ("What is the first letter of {letters}?", "Which letter does {letters} start with?",
         "Say the first letter of {letters}."),
        {"letters": "letters"},
        lambda rng: {"letters": _letters(rng, 3, 6)},
        lambda v: v["letters"][0] if len(v["letters"]) >= 2 else None,
        _LETTER_RE.fullmatch,
        lambda rng, t: rng.choice(_LOWER),
        _adjacent_letter,
        _neighbour_letter,
    ),
    TaskFamily(
        "last_letter",
        ("What is the last letter of {letters}?", "Which letter does {letters} end with?",
         "Say the last letter of {letters}."),
        {"letters": "letters"},
        lambda rng: {"letters": _letters(rng, 3, 6)},
        lambda v: v["letters"][-1] if len(v["letters"]) >= 2 else None,
        _LETTER_RE.fullmatch,
        lambda rng, t: rng.choice(_LOWER),
        _adjacent_letter,
        _neighbour_letter,
    ),
    TaskFamily(
        "capital",
        ("What is the capital form of {letter}?", "Write the letter {letter} in upper case.",
         "Capitalize the letter {letter}."),
        {"letter": "letter"},
        lambda rng: {"letter": rng.choice(_LOWER)},
        lambda v: v["letter"].upper(),
        _CAPITAL_RE.fullmatch,
        lambda rng, t: rng.choice(_LOWER).upper(),
        _adjacent_letter,
        _neighbour_letter,
    ),
    TaskFamily(
        "next_number",
        ("What number comes after {n}?", "What is the number after {n}?", "Which number follows {n}?"),
        {"n": "num"},
        lambda rng: {"n": rng.randint(0, 98)},
        lambda v: str(v["n"] + 1),
        _INT_RE.fullmatch,
        lambda rng, t: str(rng.randint(0, 99)),
        _off_by_one,
        _neighbour_int,
    ),
    # --- learned halfway -----------------------------------------------------------------------------------
    TaskFamily(
        "reverse",
        ("Reverse the word {letters}.", "Write {letters} backwards.", "What is {letters} spelled backwards?"),
        {"letters": "letters"},
        lambda rng: {"letters": _letters(rng, 3, 4)},
        lambda v: spaced(v["letters"][::-1]) if len(v["letters"]) >= 2 else None,
        _LOWER_SPACED_RE.fullmatch,
        lambda rng, t: spaced(_letters(rng, 3, 4)),
        _letters_similar,
        _edit_letters,
    ),
    TaskFamily(
        "larger",
        ("Which is larger, {a} or {b}?", "Which number is bigger: {a} or {b}?", "Pick the larger of {a} and {b}."),
        {"a": "num", "b": "num"},
        _draw_two,
        lambda v: str(max(v["a"], v["b"])) if v["a"] != v["b"] else None,
        _INT_RE.fullmatch,
        lambda rng, t: _int_not(rng, t, {t.value("a"), t.value("b")}),
        lambda t, p: p == str(min(t.value("a"), t.value("b"))),
        lambda rng, t: str(min(t.value("a"), t.value("b"))),
    ),
    TaskFamily(
        "upper",
        ("Change {letters} to capital letters.", "Write {letters} in upper case.", "Convert {letters} to uppercase."),
        {"letters": "letters"},
        lambda rng: {"letters": _letters(rng, 3, 5)},
        lambda v: spaced(v["letters"].upper()) if len(v["letters"]) >= 2 else None,
        _UPPER_SPACED_RE.fullmatch,
        lambda rng, t: spaced(_letters(rng, 3, 5).upper()),
        _letters_similar,
        _edit_letters,
    ),
    TaskFamily(
        "kth_word",
        ("What is the {ordinal} word in {words}?", "Pick the {ordinal} word from {words}.", "Say the {ordinal} word of {words}."),
        {"ordinal": "ordinal", "words": "words"},
        _draw_kth,
        lambda v: v["words"][v["ordinal"] - 1] if v["ordinal"] <= len(v["words"]) else None,
        lambda s: s in _WORD_SET,
        lambda rng, t: rng.choice([w for w in WORDS if w not in t.value("words")]),
        _one_of_the_others("words"),
        _other_element("words"),
    ),
    # --- hardly learned ------------------------------------------------------------------------------------
    TaskFamily(
        "smallest",
        ("What is the smallest of {nums}?", "Find the smallest number among {nums}.", "Pick the smallest number in {nums}."),
        {"nums": "nums"},
        _draw_three,
        lambda v: str(min(v["nums"])),
        _INT_RE.fullmatch,
        lambda rng, t: _int_not(rng, t, set(t.value("nums"))),
        _one_of_the_others("nums"),
        _other_element("nums"),
    ),
]

FAMILIES: dict[str, TaskFamily] = {f.name: f for f in _families}


def sample_task(rng: random.Random, families: Sequence[str] | None = None) -> Task:
    """Sample a task from a uniformly chosen family (all families when ``families`` is None)."""
    names = list(families) if families is not None else list(FAMILIES)
    return FAMILIES[rng.choice(names)].sample(rng)


def parse_instruction(text: str) -> Task | None:
    """Parse any family's instruction; None when ungradable or ambiguous (never guesses)."""
    found = {t for f in FAMILIES.values() if (t := f.parse(text)) is not None}
    if len({t.answer for t in found}) != 1:
        return None
    return min(found, key=lambda t: t.family)
