"""Curriculum (seed 004, conf/curriculum/*.yaml): which of an iteration's judged prompts the next model
trains on, selected by their measured difficulty once their candidates are judged.

- `none` (default): every prompt.
- `spread`: prompts whose candidates the judge tells apart, a score spread (max - min over the scored
  candidates) of at least `min_spread`; the judge alone decides, as in the self-rewarding loop.
- `success`: prompts the policy solves sometimes but not always, a share of exactly right candidates in
  [`min_success`, `max_success`]. It reads the seed data's grader (GroundTruth): an oracle-informed ablation.

The selection is written to `curriculum.json` beside the candidates (prompt ids, how many were kept,
the mean difficulty of the kept and of all prompts) and merged into stats.json, so it is logged per
iteration; DPO's pairs come from the selected prompts only, and the trainers that learn from the
candidates themselves read the same selection (`training/replay.py:training_candidates`).
"""
from __future__ import annotations

import math
from typing import Any, ClassVar, Sequence

from srlm_exp.checks import at_least, check, require
from srlm_exp.data.seed_data import GroundTruth
from srlm_exp.records import PromptCandidates, mean_or_none


def score_spread(row: PromptCandidates) -> float:
    """max - min of the candidates' valid scores; NaN with fewer than two."""
    scores = [c.score for c in row.candidates if not math.isnan(c.score)]
    return max(scores) - min(scores) if len(scores) >= 2 else math.nan


def success_rate(row: PromptCandidates) -> float:
    """The share of graded candidates that are exactly right; NaN when none is graded."""
    graded = [c.gt_correct for c in row.candidates if c.gt_correct is not None]
    return sum(graded) / len(graded) if graded else math.nan


class Curriculum:
    """No curriculum: every prompt is trained on."""

    by = "none"
    widen: str  # what to change when no prompt passes: set by every curriculum that filters

    def difficulty(self, row: PromptCandidates) -> float:
        return math.nan

    def keep(self, value: float) -> bool:
        return True

    def select(self, rows: Sequence[PromptCandidates]) -> tuple[list[PromptCandidates], dict[str, Any] | None]:
        """The rows to train on, and the report (None without a curriculum)."""
        if self.by == "none":
            return list(rows), None
        values = [self.difficulty(r) for r in rows]
        chosen = [k for k, v in enumerate(values) if not math.isnan(v) and self.keep(v)]
        if rows and not chosen:
            raise ValueError(f"curriculum {self.by}: none of the {len(rows)} prompts of this iteration passes "
                             f"(mean difficulty {mean_or_none(values)}); {self.widen}")
        report = {"by": self.by, "kept": len(chosen), "of": len(rows),
                  "selected_prompt_ids": [rows[k].prompt_id for k in chosen],
                  "mean_kept": mean_or_none([values[k] for k in chosen]), "mean_all": mean_or_none(values)}
        return [rows[k] for k in chosen], report


class SpreadCurriculum(Curriculum):
    by = "score_spread"
    widen = "lower curriculum.min_spread, or choose curriculum=none"

    def __init__(self, min_spread: float = 1.0):
        check(at_least(min_spread, 0, "min_spread", "set min_spread >= 0 (0 keeps every prompt with two scored candidates)"))
        self.min_spread = min_spread

    def difficulty(self, row: PromptCandidates) -> float:
        return score_spread(row)

    def keep(self, value: float) -> bool:
        return value >= self.min_spread


class SuccessCurriculum(Curriculum):
    by = "policy_success"
    widen = "widen curriculum.min_success..curriculum.max_success, or choose curriculum=none"
    # A grader is required so that candidates carry gt_correct; the success rate is read from them, so the
    # grader handed in (`ground_truth`) is not called here.
    requires: ClassVar[tuple[type, ...]] = (GroundTruth,)

    def __init__(self, min_success: float = 0.25, max_success: float = 0.75, ground_truth: GroundTruth | None = None):
        check(require(isinstance(min_success, (int, float)) and isinstance(max_success, (int, float))
                      and 0 <= min_success <= max_success <= 1, "min_success",
                      f"is {min_success!r} with max_success={max_success!r}", "set 0 <= min_success <= max_success <= 1"))
        self.min_success, self.max_success = min_success, max_success

    def difficulty(self, row: PromptCandidates) -> float:
        return success_rate(row)

    def keep(self, value: float) -> bool:
        return self.min_success <= value <= self.max_success
