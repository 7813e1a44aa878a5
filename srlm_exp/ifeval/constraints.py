"""IFEval's verifiable instructions as constraints: which types are used, which combine, and building one.

The checkers are IFEval's own, from the `if-verifiable` package (`INSTRUCTION_DICT`: one class per type,
`build_description(**kwargs)` renders the instruction, `get_instruction_args()` gives its parameters,
`check_following(response)` checks a response). Nothing here re-implements a check.

Types left out (`EXCLUDED`): the two whose check needs NLTK's punkt data, which cannot be downloaded here
(`length_constraints:number_sentences` counts sentences with punkt; `change_case:capital_word_frequency`
counts words with `nltk.word_tokenize`, which loads punkt). `length_constraints:number_words` needs no data
(NLTK's RegexpTokenizer). tests/test_ifeval_world.py calls every type's check once to hold that.

Randomness: `build_description()` without arguments draws its parameters from Python's module-level
`random` (and `instructions_util.generate_keywords` too). `build_constraint` seeds that generator from the
caller's own `random.Random` for the call and restores its state afterwards, so a constraint is a function of
the caller's generator only and nothing else in the process sees its draws.

Two repairs of the library's random parameters, both drawn from the caller's generator:
  * `length_constraints:nth_paragraph_first_word` draws `nth_paragraph` in 1..num_paragraphs+1 (the original
    code's range), which can ask for paragraph 4 of 3: such a draw is redrawn in 1..num_paragraphs;
  * `length_constraints:number_words` with "at least" draws N in 100..500, more words than a response of a
    few hundred tokens holds: with `max_required_words` set, N above it is redrawn in 100..max_required_words.

Conflicts: the registry's `INSTRUCTION_CONFLICTS`, made symmetric (the library's `conflict_make` does that in
place on its own dict; a copy is made here), plus `EXTRA_CONFLICTS`: pairs no response can satisfy that the
registry allows, found by reading the checkers. Two constraints that name the same word (a required keyword
that is also forbidden) are refused as well (`clash`).
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from if_verifiable.ifeval import instructions as _instructions
from if_verifiable.ifeval import instructions_registry as _registry
from if_verifiable.ifeval.instructions_util import LANGUAGE_CODES

__all__ = [
    "INSTRUCTION_DICT", "EXCLUDED", "USABLE", "EXTRA_CONFLICTS", "CONFLICTS", "REPEAT_PROMPT", "CONSTRAINED_RESPONSE",
    "NUMBER_WORDS", "NTH_PARAGRAPH", "Constraint", "library_random", "make_constraint", "build_constraint",
    "compatible", "clash", "asked",
]

INSTRUCTION_DICT: Mapping[str, type] = _registry.INSTRUCTION_DICT

EXCLUDED: dict[str, str] = {
    "length_constraints:number_sentences": "counts sentences with NLTK's punkt sentence tokenizer, whose data "
                                           "cannot be downloaded here",
    "change_case:capital_word_frequency": "counts words with nltk.word_tokenize, which needs the same punkt data",
}
USABLE: tuple[str, ...] = tuple(k for k in INSTRUCTION_DICT if k not in EXCLUDED)

REPEAT_PROMPT = "combination:repeat_prompt"
CONSTRAINED_RESPONSE = "detectable_format:constrained_response"
NUMBER_WORDS = "length_constraints:number_words"
NTH_PARAGRAPH = "length_constraints:nth_paragraph_first_word"
_NUM_WORDS_LOWER = int(getattr(_instructions, "_NUM_WORDS_LOWER_LIMIT", 100))

# Pairs the registry allows that no response can satisfy (the checkers read together).
EXTRA_CONFLICTS: dict[tuple[str, str], str] = {
    ("change_case:english_lowercase", "detectable_format:multiple_sections"):
        "the section marker must be written 'Section 1' or 'SECTION 1' (the check is case-sensitive), "
        "never in lowercase",
    ("change_case:english_capital", "detectable_format:multiple_sections"):
        "a marker 'Section 1' is not all capitals",
}


def _symmetric_conflicts() -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {k: set(v) for k, v in _registry.INSTRUCTION_CONFLICTS.items()}
    for a, b in EXTRA_CONFLICTS:
        out.setdefault(a, set()).add(b)
    for a in list(out):
        out[a].add(a)
        for b in list(out[a]):
            out.setdefault(b, {b}).add(a)
    return {k: frozenset(v) for k, v in out.items()}


CONFLICTS: dict[str, frozenset[str]] = _symmetric_conflicts()


@dataclass(frozen=True)
class Constraint:
    """One verifiable instruction: its type id, the parameters it was built with, and its text."""

    id: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kwargs": dict(self.kwargs)}


@contextmanager
def library_random(seed: int) -> Iterator[None]:
    """Python's module-level `random` seeded with `seed` inside the block, its earlier state restored after."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def make_constraint(type_id: str, kwargs: Mapping[str, Any]) -> Constraint:
    """The constraint of `type_id` with exactly these parameters (the library renders its description)."""
    if type_id not in INSTRUCTION_DICT:
        raise KeyError(f"unknown IFEval instruction type {type_id!r}")
    checker = INSTRUCTION_DICT[type_id](type_id)
    with library_random(0):  # complete parameters draw nothing; this keeps it so if one is missing
        description = checker.build_description(**dict(kwargs))
        args = checker.get_instruction_args() or {}
    return Constraint(type_id, dict(args), description)


def build_constraint(type_id: str, rng: random.Random, prompt_to_repeat: str | None = None,
                     max_required_words: int | None = None) -> Constraint:
    """A constraint of `type_id` with the library's random parameters, drawn from `rng` (see the module
    docstring); `prompt_to_repeat` is the request a `combination:repeat_prompt` constraint repeats."""
    if type_id not in INSTRUCTION_DICT:
        raise KeyError(f"unknown IFEval instruction type {type_id!r}")
    checker = INSTRUCTION_DICT[type_id](type_id)
    with library_random(rng.getrandbits(64)):
        if type_id == REPEAT_PROMPT:
            if not prompt_to_repeat:
                raise ValueError("combination:repeat_prompt needs the request it repeats (prompt_to_repeat)")
            checker.build_description(prompt_to_repeat=prompt_to_repeat)
        else:
            checker.build_description()
        kwargs = dict(checker.get_instruction_args() or {})
    if type_id == NTH_PARAGRAPH and kwargs["nth_paragraph"] > kwargs["num_paragraphs"]:
        kwargs["nth_paragraph"] = rng.randint(1, kwargs["num_paragraphs"])
    if (type_id == NUMBER_WORDS and max_required_words is not None and kwargs["relation"] == "at least"
            and kwargs["num_words"] > max_required_words):
        kwargs["num_words"] = rng.randint(_NUM_WORDS_LOWER, max(_NUM_WORDS_LOWER, max_required_words))
    return make_constraint(type_id, kwargs)


def compatible(a: str, b: str) -> bool:
    """Whether types `a` and `b` may be asked for in one prompt (neither conflicts with the other)."""
    return b not in CONFLICTS.get(a, frozenset({a})) and a not in CONFLICTS.get(b, frozenset({b}))


def _words(c: Constraint) -> set[str]:
    k = c.kwargs
    words = set(k.get("keywords") or ()) | set(k.get("forbidden_words") or ())
    for key in ("keyword", "first_word"):
        if k.get(key):
            words.add(k[key])
    return {w.lower() for w in words}


def clash(a: Constraint, b: Constraint) -> bool:
    """Two constraints that name a common word (a keyword that is also forbidden, say)."""
    return bool(_words(a) & _words(b))


def _and(items: list[str], last: str = "and") -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {last} {items[-1]}"


def asked(c: Constraint) -> str:
    """What the constraint asks for, as a short noun phrase (the EFT judgments name it)."""
    k, t = c.kwargs, c.id
    phrases = {
        "keywords:existence": lambda: f"the keywords {_and(list(k['keywords']))}",
        "keywords:frequency": lambda: f"the word {k['keyword']} {k['relation']} {k['frequency']} times",
        "keywords:forbidden_words": lambda: f"none of the words {_and(list(k['forbidden_words']), 'or')}",
        "keywords:letter_frequency": lambda: f"the letter {k['letter']} {k['let_relation']} {k['let_frequency']} times",
        "language:response_language": lambda: f"a response entirely in {LANGUAGE_CODES.get(k['language'], k['language'])}",
        "length_constraints:number_paragraphs": lambda: f"{k['num_paragraphs']} paragraphs separated by ***",
        NUMBER_WORDS: lambda: f"{k['relation']} {k['num_words']} words",
        NTH_PARAGRAPH: lambda: (f"{k['num_paragraphs']} paragraphs with paragraph {k['nth_paragraph']} "
                                f"starting with {k['first_word']}"),
        "detectable_content:number_placeholders": lambda: f"at least {k['num_placeholders']} placeholders in square brackets",
        "detectable_content:postscript": lambda: f"a postscript starting with {k['postscript_marker']}",
        "detectable_format:number_bullet_lists": lambda: f"exactly {k['num_bullets']} bullet points",
        CONSTRAINED_RESPONSE: lambda: "one of the given answer options",
        "detectable_format:number_highlighted_sections": lambda: f"at least {k['num_highlights']} highlighted sections",
        "detectable_format:multiple_sections": lambda: f"{k['num_sections']} sections marked {k['section_spliter']} X",
        "detectable_format:json_format": lambda: "the whole output in JSON",
        "detectable_format:title": lambda: "a title in double angular brackets",
        "combination:two_responses": lambda: "two different responses separated by ******",
        REPEAT_PROMPT: lambda: "the request repeated word for word first",
        "startend:end_checker": lambda: f'the exact ending "{k["end_phrase"]}"',
        "change_case:english_capital": lambda: "English in capital letters only",
        "change_case:english_lowercase": lambda: "English in lowercase letters only",
        "punctuation:no_comma": lambda: "no commas",
        "startend:quotation": lambda: "the whole response in double quotes",
    }
    return phrases[t]() if t in phrases else t
