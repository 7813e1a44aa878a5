"""The seed data's ground-truth grader as a judge: the upper bound, and a way to get pairs from a model
that cannot judge yet (or a randomly initialised one). Needs seed data with a grader (GroundTruth)."""
from __future__ import annotations

import math
from typing import ClassVar, Sequence

from srlm_exp.data.seed_data import GroundTruth
from srlm_exp.judging.judge import ScorerWithJudgePrompt
from srlm_exp.records import CandidateJudgments


class OracleJudge(ScorerWithJudgePrompt):
    requires: ClassVar[tuple[type, ...]] = (GroundTruth,)

    def __init__(self, *args, ground_truth: GroundTruth, **kwargs):
        super().__init__(*args, **kwargs)
        self.ground_truth = ground_truth

    def judge_in_loop(self, policy, tokenizer, instructions: Sequence[str], candidates: Sequence[Sequence[str]],
                      models, iteration: int, batch_size: int = 32) -> list[list[CandidateJudgments]]:
        return self.scores(instructions, candidates)

    def scores(self, instructions: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[list[CandidateJudgments]]:
        """The grader's score of every candidate (no model)."""
        out = []
        for instruction, cands in zip(instructions, candidates):
            row = []
            for response in cands:
                g = self.ground_truth.grade(instruction, response)
                # Ungradable instructions (outside the grader's tasks) are missing, not scored.
                text = "oracle: ungradable" if g is None else f"oracle: {self.score_marker} {g.score}"
                row.append(CandidateJudgments([text], [math.nan if g is None else float(g.score)]))
            out.append(row)
        return out
