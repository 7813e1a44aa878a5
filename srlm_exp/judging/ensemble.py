"""Ensemble judging (the self-rewarding variants of seed 004): several judges (different prompts and/or
judge models) score every candidate, and their scores are combined by mean or median.

Each member's score is first mapped linearly from its own range onto the ensemble's (additive5 scores
0-5, holistic5 1-5), so that no member weighs more because of its scale. A member with no valid
judgment of a candidate is left out of that candidate's combination; a candidate no member scored has no
score. The raw judgments of every member, each member's score and the members' disagreement (the
standard deviation of their mapped scores) are kept in the candidate's judgment text, and the mean
disagreement of an AIFT set is logged and reported (stats.json and the summary: `judge_report`).
"""
from __future__ import annotations

import logging
import math
import statistics
from typing import Mapping, Sequence

from srlm_exp.checks import check, require
from srlm_exp.judging.judge import Judge, ScorerWithJudgePrompt
from srlm_exp.records import CandidateJudgments

log = logging.getLogger(__name__)
COMBINE = ("mean", "median")


def rescale(score: float, source: tuple[float, float], target: tuple[float, float]) -> float:
    """`score` on the `source` range mapped linearly onto the `target` range (NaN stays NaN)."""
    (a, b), (lo, hi) = source, target
    return lo + (score - a) * (hi - lo) / (b - a)


def combine(scores: Sequence[float], how: str) -> tuple[float, float]:
    """(the mean or median of the valid scores, their population standard deviation); NaN, NaN when none."""
    valid = [s for s in scores if not math.isnan(s)]
    if not valid:
        return math.nan, math.nan
    value = statistics.fmean(valid) if how == "mean" else statistics.median(valid)
    return value, statistics.pstdev(valid)


class EnsembleJudge(ScorerWithJudgePrompt):
    """Its members score (each any judge option); the model is trained and evaluated with the prompt this extends."""

    def __init__(self, *args, members: Mapping[str, Judge | ScorerWithJudgePrompt], combine: str = "mean", **kwargs):
        super().__init__(*args, **kwargs)
        check(require(combine in COMBINE, "combine", f"is {combine!r}", f"choose one of {', '.join(COMBINE)}"),
              require(len(members) >= 2, "members", f"has {len(members)} judge(s)",
                      "give at least two judges (e.g. judge/additive5 and judge/holistic5 in conf/judge/ensemble.yaml)"))
        self.members, self.how = dict(members), combine
        self.last_report: dict | None = None

    def loop_report(self) -> dict | None:
        return self.last_report

    def _combined(self, per_member: dict[str, list[list[CandidateJudgments]]]) -> list[list[CandidateJudgments]]:
        names = list(per_member)
        first = per_member[names[0]]
        out, spreads = [], []
        for p, row in enumerate(first):
            judged = []
            for c in range(len(row)):
                parts, mapped = [], []
                for name in names:
                    j, m = per_member[name][p][c], self.members[name]
                    mapped.append(rescale(j.score, (m.low, m.high), (self.low, self.high)))
                    parts.append(f"[{name}: {' | '.join(j.texts)} -> {j.score:.2f}]")
                value, spread = combine(mapped, self.how)
                if not math.isnan(spread):
                    spreads.append(spread)
                text = f"{' '.join(parts)} {self.how} {value:.3f}, disagreement {spread:.3f}. {self.score_marker} {value:.3f}"
                judged.append(CandidateJudgments([text], [value]))
            out.append(judged)
        self.last_report = {"members": names, "mean_disagreement": statistics.fmean(spreads) if spreads else None}
        if spreads:
            log.info("ensemble of %s: mean disagreement %.3f (std of the members' scores on the %g-%g scale)",
                     ", ".join(names), statistics.fmean(spreads), self.low, self.high)
        return out

    def judge_in_loop(self, policy, tokenizer, instructions: Sequence[str], candidates: Sequence[Sequence[str]],
                      models, iteration: int, batch_size: int = 32) -> list[list[CandidateJudgments]]:
        # Each member judges as it would alone: with the policy, its own judge model, or M(t-1).
        return self._combined({name: m.judge_in_loop(policy, tokenizer, instructions, candidates, models, iteration,
                                                     batch_size=batch_size) for name, m in self.members.items()})
