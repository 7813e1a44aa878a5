"""The seed data's ground-truth grader as a judge: the upper bound, and a way to get pairs from a model
that cannot judge yet (or a randomly initialised one). Needs seed data with a grader (GroundTruth)."""
from __future__ import annotations

import math
from typing import ClassVar, Sequence

from srlm_exp.data.seed_data import GroundTruth
from srlm_exp.judging.judge import Judge
from srlm_exp.judging.records import Judgment


class OracleJudge(Judge):
    uses_model = False
    requires: ClassVar[tuple[type, ...]] = (GroundTruth,)

    def __init__(self, *args, ground_truth: GroundTruth, **kwargs):
        super().__init__(*args, **kwargs)
        self.ground_truth = ground_truth

    def judge(self, model, tokenizer, instructions: Sequence[str], candidates: Sequence[Sequence[str]],
              batch_size: int = 32, desc: str = "judge") -> list[list[Judgment]]:
        out = []
        for instruction, cands in zip(instructions, candidates):
            row = []
            for response in cands:
                g = self.ground_truth.grade(instruction, response)
                # Ungradable instructions (outside the grader's tasks) are missing, not scored.
                text = "oracle: ungradable" if g is None else f"oracle: {self.score_marker} {g.score}"
                row.append(Judgment([text], [math.nan if g is None else float(g.score)]))
            out.append(row)
        return out
