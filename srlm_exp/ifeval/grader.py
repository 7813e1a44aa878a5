"""Ground truth for the IFEval world: IFEval's strict and loose checks per constraint, and a 0-5 rubric.

Per constraint (IFEval's two measures, computed by `if_verifiable.common.evaluate_instructions`, the
package's own evaluation helper):
  * strict: the checker passes on the response as it is;
  * loose: the checker passes on any of IFEval's 8 variants of the response (the response itself, with
    its first line, its last line or both removed, each with and without asterisks removed:
    `if_verifiable.common.get_loose_transformations`, as in IFEval's evaluation_lib).

`correct` is IFEval's prompt-level strict accuracy: every constraint passes strictly.

The 0-5 rubric score (`rubric_score`), on the judge's scale, ordered by how much of the request is met:
  5  every constraint passes strictly (`correct`);
  4  every constraint passes loosely, not every one strictly (a stray first/last line or markdown
     asterisks in the way);
  3  some constraint passes strictly, but some other fails even loosely;
  2  some constraint passes loosely, none strictly, and some other fails even loosely;
  1  no constraint passes, even loosely (a non-empty response);
  0  the response is empty (nothing to check).
Scores 2 and 3 need two constraints; a one-constraint prompt scores 0, 1, 4 or 5. The rubric measures the
constraints only: IFEval does not check the base task ("Write a poem about the ocean"), and neither does
this grader, so a response on the wrong topic that meets the constraints scores 5.

langdetect (the language and case checks) samples at random unless seeded: its seed is fixed here
(`DetectorFactory.seed = 0`) so that a response always gets the same grade.

`judgment()` writes the EFT target in the additive5 judge's format: what the request asks for (each
constraint named), whether the response meets each, then `Score: N`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import langdetect
from if_verifiable.common import evaluate_instructions

from .constraints import INSTRUCTION_DICT, Constraint, asked
from .parsing import parse_instruction

__all__ = ["IFGrade", "grade_constraints", "grade", "rubric_score", "judgment", "ifeval_metrics"]

langdetect.DetectorFactory.seed = 0  # deterministic language detection (see the module docstring)


@dataclass(frozen=True)
class IFGrade:
    """A graded response: rubric score 0-5, IFEval prompt-level strict pass, the family (the first
    constraint's type id), and per constraint its type id and strict / loose pass."""

    score: int
    correct: bool
    family: str
    ids: tuple[str, ...]
    strict: tuple[bool, ...]
    loose: tuple[bool, ...]

    @property
    def loose_correct(self) -> bool:
        """IFEval's prompt-level loose pass: every constraint passes loosely."""
        return bool(self.loose) and all(self.loose)


def rubric_score(strict: Sequence[bool], loose: Sequence[bool], empty: bool) -> int:
    """The 0-5 score of the module docstring from the per-constraint passes (strict implies loose)."""
    if empty:
        return 0
    loose = [s or loose_pass for s, loose_pass in zip(strict, loose)]
    if all(strict):
        return 5
    if all(loose):
        return 4
    if any(strict):
        return 3
    if any(loose):
        return 2
    return 1


def grade_constraints(constraints: Sequence[Constraint], response: str) -> IFGrade:
    """Strict and loose pass of every constraint on `response`, and the rubric score."""
    if not constraints:
        raise ValueError("nothing to grade: no constraint")
    results, _ = evaluate_instructions(response=response, instruction_id_list=[c.id for c in constraints],
                                       kwargs_list=[dict(c.kwargs) for c in constraints], prompt="",
                                       instruction_registry=INSTRUCTION_DICT)
    empty = not results  # the helper checks nothing in an empty response (and fails every constraint)
    if not empty and len(results) != len(constraints):
        raise RuntimeError(f"if-verifiable checked {len(results)} of {len(constraints)} constraints")
    strict = tuple(bool(r.strict_pass) for r in results) if results else (False,) * len(constraints)
    loose = tuple(bool(r.loose_pass) for r in results) if results else (False,) * len(constraints)
    score = rubric_score(strict, loose, empty)
    return IFGrade(score=score, correct=score == 5, family=constraints[0].id, ids=tuple(c.id for c in constraints),
                   strict=strict, loose=loose)


def grade(instruction: str, response: str) -> IFGrade | None:
    """The grade of `response` to `instruction`, or None when the instruction is not gradable (parsing.py)."""
    constraints = parse_instruction(instruction)
    return None if constraints is None else grade_constraints(constraints, response)


_LOOSELY = "only loosely (with a stray line or asterisks)"


def _join(items: list[str], last: str = "and") -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {last} {items[-1]}"


def judgment(constraints: Sequence[Constraint], g: IFGrade) -> str:
    """The justification a good judge would write, ending in `Score: N`: what the request asks for (every
    constraint named), then whether the response meets each, by position where there are several (short:
    the model writes it K times per candidate). E.g. "The request asks for a title in double angular
    brackets and no commas. The response meets the first but misses the second. Score: 3"."""
    head = f"The request asks for {_join([asked(c) for c in constraints])}."
    if g.score == 0:
        return f"{head} The response is empty. Score: 0"
    status = ["meets" if s else "loose" if loose_pass else "misses" for s, loose_pass in zip(g.strict, g.loose)]

    def clause(what: str, st: str) -> str:
        return f"meets {what} {_LOOSELY}" if st == "loose" else f"{st} {what}"

    if len(status) == 1:
        verdict = clause("it", status[0])
    elif len(set(status)) == 1:
        verdict = clause("both" if len(status) == 2 else "all of them", status[0])
    else:
        parts = [clause(f"the {_ORDINALS[i]}", st) for i, st in enumerate(status)]
        passed = [st != "misses" for st in status]
        verdict = f"{parts[0]} {'and' if passed[0] == passed[1] else 'but'} {parts[1]}" if len(parts) == 2 \
            else _join(parts)
    return f"{head} The response {verdict}. Score: {g.score}"


_ORDINALS = ("first", "second", "third", "fourth", "fifth")


def ifeval_metrics(grades: Sequence[IFGrade]) -> dict[str, float | None]:
    """IFEval's four accuracies over graded responses: prompt-level strict / loose (every constraint of the
    prompt passes) and instruction-level strict / loose (share of all constraints that pass)."""
    n_constraints = sum(len(g.strict) for g in grades)

    def share(k: float, n: int) -> float | None:
        return k / n if n else None

    return {"prompt_strict": share(sum(g.correct for g in grades), len(grades)),
            "prompt_loose": share(sum(g.loose_correct for g in grades), len(grades)),
            "instruction_strict": share(sum(sum(g.strict) for g in grades), n_constraints),
            "instruction_loose": share(sum(sum(g.loose) for g in grades), n_constraints)}
