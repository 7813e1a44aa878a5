"""Reading the constraints back from an instruction's text, so that any process grades any prompt.

The grader needs each prompt's constraints and their parameters. A map kept by the process that drew the
prompts would not do: the loop's prompts are written by rank 0 and graded on every rank, and a resumed job
reads them back from prompts.jsonl. Nothing is hidden in the prompt either. Instead every IFEval
description is found in the text by a pattern made from the library's own description template, its
parameters are read from the match, and the description is **rendered again from those parameters and
must equal the matched text exactly**. A text that only resembles a description is not read as one.

`parse_instruction(text)` returns the constraints in the order they appear, or None when the text is not
gradable: no description found, one of an excluded type (the punkt-based types), the same type twice,
overlapping matches, a match that does not render back, or a `combination:repeat_prompt` with nothing
before it to repeat. The request a repeat_prompt constraint repeats is, by definition here and in the
prompt generator, all the text before its description, stripped.

It recognises instructions written by anyone (a model's own self-instruct prompts included) that use the
library's wording; it never guesses.
"""
from __future__ import annotations

import ast
import functools
import re
import string
from dataclasses import dataclass
from typing import Any, Callable

from if_verifiable.ifeval.instructions_util import LANGUAGE_CODES

from .constraints import EXCLUDED, INSTRUCTION_DICT, REPEAT_PROMPT, Constraint, library_random, make_constraint

__all__ = ["parse_instruction"]

_NUMBER = r"\d+"
_RELATION = r"less than|at least"
_LIST = r"\[[^\]\n]*\]"
# placeholder in the library's template -> (regex, the build_description argument it fills, converter)
_LANGUAGE_BY_NAME = {name: code for code, name in LANGUAGE_CODES.items()}


def _literal_list(s: str) -> list[str]:
    value = ast.literal_eval(s)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(s)
    return value


_PLACEHOLDERS: dict[str, tuple[str, str, Callable[[str], Any]]] = {
    "relation": (_RELATION, "relation", str),
    "let_relation": (_RELATION, "let_relation", str),
    "keywords": (_LIST, "keywords", _literal_list),
    "forbidden_words": (_LIST, "forbidden_words", _literal_list),
    "keyword": (r"\S+", "keyword", str),
    "first_word": (r"\S+?", "first_word", str),
    "letter": (r"[A-Za-z]", "letter", str),
    "section_spliter": (r"\S+", "section_spliter", str),
    "postscript": (r"\S+", "postscript_marker", str),
    "ender": (r".+?", "end_phrase", str),
    "language": ("|".join(re.escape(n) for n in sorted(_LANGUAGE_BY_NAME, key=len, reverse=True)), "language",
                 lambda s: _LANGUAGE_BY_NAME[s]),
}
_NUMBERS = ("num_sentences", "num_placeholders", "num_bullets", "num_highlights", "num_sections", "num_paragraphs",
            "frequency", "num_words", "nth_paragraph", "let_frequency", "capital_frequency")


@dataclass(frozen=True)
class _Pattern:
    type_id: str
    regex: re.Pattern
    fields: dict[str, tuple[str, Callable[[str], Any]]]  # regex group -> (argument, converter)


def _template_regex(template: str) -> tuple[str, dict[str, tuple[str, Callable[[str], Any]]]]:
    out: list[str] = []
    fields: dict[str, tuple[str, Callable[[str], Any]]] = {}
    for literal, name, _spec, _conv in string.Formatter().parse(template):
        out.append(re.escape(literal))
        if name is None:
            continue
        if name in fields:  # the same value again (SECTION in "SECTION X, such as: SECTION 1 ...")
            out.append(f"(?P={name})")
            continue
        if name in _NUMBERS:
            regex, arg = _NUMBER, name
            conv: Callable[[str], Any] = int
        elif name in _PLACEHOLDERS:
            regex, arg, conv = _PLACEHOLDERS[name]
        else:
            raise KeyError(f"no pattern for the placeholder {{{name}}} of {template!r}")
        out.append(f"(?P<{name}>{regex})")
        fields[name] = (arg, conv)
    return "".join(out), fields


@functools.cache
def _patterns() -> tuple[_Pattern, ...]:
    """One pattern per registry type (the excluded ones too: a text that uses one is not gradable)."""
    pats = []
    for type_id, cls in INSTRUCTION_DICT.items():
        checker = cls(type_id)
        with library_random(0):
            rendered = checker.build_description(**({"prompt_to_repeat": "x"} if type_id == REPEAT_PROMPT else {}))
        arg_keys = [k for k in checker.get_instruction_args_keys() if k != "prompt_to_repeat"]
        fields: dict[str, tuple[str, Callable[[str], Any]]]
        if not arg_keys:  # a fixed text
            regex, fields = re.escape(rendered), {}
        else:
            regex, fields = _template_regex(checker._description_pattern)
        pats.append(_Pattern(type_id, re.compile(regex), fields))
    return tuple(pats)



def _read(p: _Pattern, m: re.Match, text: str) -> Constraint | None:
    try:
        kwargs = {arg: conv(m.group(g)) for g, (arg, conv) in p.fields.items()}
    except (ValueError, SyntaxError, KeyError):
        return None
    if p.type_id == REPEAT_PROMPT:
        before = text[: m.start()].strip()
        if not before:
            return None
        kwargs["prompt_to_repeat"] = before
    try:
        c = make_constraint(p.type_id, kwargs)
    except (ValueError, TypeError):
        return None
    return c if c.description == m.group(0) else None


@functools.lru_cache(maxsize=65536)
def parse_instruction(text: str) -> tuple[Constraint, ...] | None:
    """The constraints of `text` in order of appearance, or None when it is not gradable (module docstring)."""
    found: list[tuple[int, int, Constraint]] = []
    for p in _patterns():
        for m in p.regex.finditer(text):
            if p.type_id in EXCLUDED:
                return None
            c = _read(p, m, text)
            if c is None:
                return None
            found.append((m.start(), m.end(), c))
    if not found:
        return None
    found.sort(key=lambda x: x[0])
    ids = [c.id for _, _, c in found]
    if len(set(ids)) != len(ids) or any(a[1] > b[0] for a, b in zip(found, found[1:])):
        return None
    return tuple(c for _, _, c in found)
