"""The world's ground-truth grader as a judge: the upper bound, and a way to get pairs from a
model that cannot judge yet (or a randomly initialised one)."""
from __future__ import annotations

import math
from typing import Sequence

from srlm_exp.judging.judge import Judge, Judgment
from srlm_exp.world.grader import grade


class OracleJudge(Judge):
    uses_model = False

    def judge(self, model, tokenizer, instructions: Sequence[str], candidates: Sequence[Sequence[str]],
              batch_size: int = 32, desc: str = "judge") -> list[list[Judgment]]:
        out = []
        for instruction, cands in zip(instructions, candidates):
            row = []
            for response in cands:
                g = grade(instruction, response)
                # Ungradable instructions (not in the world's task families) are missing, not scored.
                score = math.nan if g is None else float(g.score)
                text = "oracle: ungradable" if g is None else f"oracle: Score: {g.score}"
                row.append(Judgment(texts=[text], scores=[score]))
            out.append(row)
        return out

    def model_judge(self) -> Judge:
        # The model still learns and is evaluated with the (paper's) template this option extends.
        return Judge(self.name, self.template, self.score_pattern, (self.low, self.high), self.num_judgments,
                     self.sampling.temperature, self.sampling.top_p, self.sampling.max_new_tokens)
