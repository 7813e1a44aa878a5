"""Task families of the embedded instruction world: templated instructions with a computed answer.

Letter content is written with spaces between letters (``c a t``) so a whitespace-splitting
tokenizer sees single letters; numbers are plain digits (the tokenizer splits them).
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
    """One instruction of a family and its exact true answer string."""

    family: str
    instruction: str
    answer: str


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
_LOWER_SPACED_RE = re.compile(r"[a-z](?: [a-z])*")
_UPPER_SPACED_RE = re.compile(r"[A-Z](?: [A-Z])*")
_NUM_LIST_RE = re.compile(r"(?:0|[1-9][0-9]*)(?: (?:0|[1-9][0-9]*))*")


@dataclass(frozen=True)
class SlotType:
    """A template slot: the regex it matches, how to read it and how to write it."""

    regex: str
    parse: Callable[[str], Any]  # returns None when the text is not a valid value
    render: Callable[[Any], str]


def _parse_words(text: str) -> list[str] | None:
    words = text.split(" ")
    return words if all(w in _WORD_SET for w in words) else None


SLOT_TYPES: dict[str, SlotType] = {
    "letters": SlotType(r"[a-z](?: [a-z])*", lambda s: s.replace(" ", ""), spaced),
    "letter": SlotType(r"[a-z]", lambda s: s, lambda v: v),
    "num": SlotType(_NUM, int, str),
    "nums": SlotType(rf"{_NUM}(?: {_NUM})+", lambda s: [int(x) for x in s.split(" ")],
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
    """A family: templates, a slot sampler, a solver and the type check of its answers."""

    def __init__(
        self,
        name: str,
        templates: Sequence[str],
        slots: Mapping[str, str],
        draw: Callable[[random.Random], dict[str, Any]],
        solve: Callable[[dict[str, Any]], str | None],
        answer_ok: Callable[[str], bool],
        random_answer: Callable[[random.Random, Task], str],
        near_misses: Callable[[str], list[str]] | None = None,
    ) -> None:
        self.name = name
        self.templates: tuple[str, ...] = tuple(templates)
        self.slots = dict(slots)
        self._draw = draw
        self._solve = solve
        self._answer_ok = answer_ok
        self._random_answer = random_answer
        self._near_misses = near_misses
        self._patterns = tuple(_compile_template(t, self.slots) for t in self.templates)

    def __repr__(self) -> str:
        return f"TaskFamily({self.name!r}, {len(self.templates)} templates)"

    def sample(self, rng: random.Random) -> Task:
        """Draw slot values and a template; return the task with its computed answer."""
        values = self._draw(rng)
        template = rng.choice(self.templates)
        text = template.format(**{k: SLOT_TYPES[self.slots[k]].render(v) for k, v in values.items()})
        answer = self._solve(values)
        assert answer is not None, (self.name, values)
        return Task(self.name, text, answer)

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
            answer = self._solve(values)
            if answer is not None:
                return Task(self.name, text, answer)
        return None

    def answer_type_ok(self, pred: str) -> bool:
        """Is ``pred`` (whitespace-normalised) an answer of this family's kind?"""
        return bool(pred) and self._answer_ok(normalize_ws(pred))

    def random_answer(self, rng: random.Random, task: Task) -> str:
        """A random answer of the right type (usually wrong) for ``task``."""
        return self._random_answer(rng, task)

    def near_misses(self, answer: str) -> list[str] | None:
        """Family-specific near-miss candidates, or None to use generic character edits."""
        return None if self._near_misses is None else self._near_misses(answer)


# ---------------------------------------------------------------- family definitions

def _letters(rng: random.Random, lo: int, hi: int) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(lo, hi)))


def _nums(rng: random.Random, lo: int = 3, hi: int = 5) -> list[int]:
    return [rng.randint(0, 99) for _ in range(rng.randint(lo, hi))]


def _draw_count(rng: random.Random) -> dict[str, Any]:
    # Control the occurrence count directly: uniform random letters almost always give 1.
    length = rng.randint(4, 7)
    letter = rng.choice(string.ascii_lowercase)
    k = rng.choice((0, 1, 1, 2, 2, 3))
    others = [c for c in string.ascii_lowercase if c != letter]
    chars = [rng.choice(others) for _ in range(length)]
    for pos in rng.sample(range(length), k):
        chars[pos] = letter
    return {"letter": letter, "letters": "".join(chars)}


def _draw_kth(rng: random.Random) -> dict[str, Any]:
    words = rng.sample(WORDS, rng.randint(4, 5))
    return {"ordinal": rng.randint(1, 4), "words": words}


def _kth_near(answer: str) -> list[str]:
    return [w for w in WORDS if w != answer and _edit1(w, answer)]


def _edit1(a: str, b: str) -> bool:
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b)) == 1
    if abs(len(a) - len(b)) != 1:
        return False
    short, long_ = sorted((a, b), key=len)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def _rand_int_answer(rng: random.Random, _task: Task) -> str:
    return str(rng.randint(0, 199))


_families = [
    TaskFamily(
        "reverse",
        ("Reverse the word {letters}.", "Write {letters} backwards.",
         "Spell the word {letters} in reverse order.", "What is {letters} spelled backwards?"),
        {"letters": "letters"},
        lambda rng: {"letters": _letters(rng, 3, 5)},
        lambda v: spaced(v["letters"][::-1]),
        _LOWER_SPACED_RE.fullmatch,
        lambda rng, t: spaced(_letters(rng, 3, 5)),
    ),
    TaskFamily(
        "sort",
        ("Sort these numbers from smallest to largest: {nums}.", "Put {nums} in increasing order.",
         "Arrange the numbers {nums} in ascending order.", "Sort {nums} in ascending order."),
        {"nums": "nums"},
        lambda rng: {"nums": _nums(rng)},
        lambda v: " ".join(map(str, sorted(v["nums"]))),
        _NUM_LIST_RE.fullmatch,
        lambda rng, t: " ".join(map(str, sorted(_nums(rng)))),
    ),
    TaskFamily(
        "add",
        ("What is {a} plus {b}?", "Add {a} and {b}.", "Compute the sum of {a} and {b}.",
         "Find {a} + {b}."),
        {"a": "num", "b": "num"},
        lambda rng: {"a": rng.randint(1, 99), "b": rng.randint(1, 99)},
        lambda v: str(v["a"] + v["b"]),
        _INT_RE.fullmatch,
        _rand_int_answer,
    ),
    TaskFamily(
        "count",
        ("How many times does the letter {letter} appear in {letters}?",
         "Count how many times {letter} occurs in {letters}.",
         "In {letters}, how many times does the letter {letter} appear?"),
        {"letter": "letter", "letters": "letters"},
        _draw_count,
        lambda v: str(v["letters"].count(v["letter"])),
        _INT_RE.fullmatch,
        lambda rng, t: str(rng.randint(0, 9)),
    ),
    TaskFamily(
        "upper",
        ("Change {letters} to capital letters.", "Write {letters} in upper case.",
         "Capitalize every letter of {letters}.", "Convert {letters} to uppercase."),
        {"letters": "letters"},
        lambda rng: {"letters": _letters(rng, 3, 5)},
        lambda v: spaced(v["letters"].upper()),
        _UPPER_SPACED_RE.fullmatch,
        lambda rng, t: spaced(_letters(rng, 3, 5).upper()),
    ),
    TaskFamily(
        "kth_word",
        ("What is the {ordinal} word in {words}?", "Pick the {ordinal} word from {words}.",
         "Which word comes {ordinal} in {words}?", "Say the {ordinal} word of {words}."),
        {"ordinal": "ordinal", "words": "words"},
        _draw_kth,
        lambda v: v["words"][v["ordinal"] - 1] if v["ordinal"] <= len(v["words"]) else None,
        lambda s: s in _WORD_SET,
        lambda rng, t: rng.choice(WORDS),
        _kth_near,
    ),
    TaskFamily(
        "max",
        ("What is the largest of {nums}?", "Find the biggest number among {nums}.",
         "Which is the maximum of {nums}?", "Pick the largest number in {nums}."),
        {"nums": "nums"},
        lambda rng: {"nums": _nums(rng)},
        lambda v: str(max(v["nums"])),
        _INT_RE.fullmatch,
        _rand_int_answer,
    ),
]

FAMILIES: dict[str, TaskFamily] = {f.name: f for f in _families}
assert all(_kth_near(w) for w in WORDS)


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
