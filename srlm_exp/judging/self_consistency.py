"""Self-consistency as the reward (Lee et al. 2025: the majority-vote filter that lets small transformers
improve on their own): a candidate's score is the share of the prompt's *other* candidates that give the
same answer, scaled to the judge's score range. No judge prompt is generated: the N samples vote.

Answers are compared after normalisation (case, whitespace, a final period), or, with `answer_pattern`,
by the first group of that regex (e.g. `The answer is ([^.]*)`), so that wording around the answer does not
split the vote. A candidate with no other candidate to agree with has no score (missing, never 0).
"""
from __future__ import annotations

import math
import re
from typing import Sequence

from srlm_exp.checks import check, require
from srlm_exp.judging.judge import ScorerWithJudgePrompt
from srlm_exp.records import CandidateJudgments


def normalized_answer(text: str, pattern: re.Pattern[str] | None = None) -> str:
    if pattern is not None:
        m = pattern.search(text)
        text = m.group(1) if m is not None and m.groups() else (m.group(0) if m is not None else text)
    return " ".join(text.lower().split()).rstrip(".").strip()


def agreement_scores(answers: Sequence[str], low: float, high: float) -> list[float]:
    """For each answer, low + (high - low) * (others with the same answer) / (others); NaN when alone."""
    n = len(answers)
    if n < 2:
        return [math.nan] * n
    return [low + (high - low) * (sum(b == a for b in answers) - 1) / (n - 1) for a in answers]


class SelfConsistencyJudge(ScorerWithJudgePrompt):

    def __init__(self, *args, answer_pattern: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        try:
            self.answer_pattern = re.compile(answer_pattern) if answer_pattern else None
        except re.error as exc:
            self.answer_pattern = None
            check(require(False, "answer_pattern", f"is not a regular expression ({exc})",
                          "set answer_pattern=null (whole responses) or a regex whose first group is the answer"))

    def judge_in_loop(self, policy, tokenizer, instructions: Sequence[str], candidates: Sequence[Sequence[str]],
                      models, iteration: int, batch_size: int = 32) -> list[list[CandidateJudgments]]:
        return self.scores(candidates)

    def scores(self, candidates: Sequence[Sequence[str]]) -> list[list[CandidateJudgments]]:
        """Each candidate's agreement with the other candidates of its prompt (no model)."""
        out = []
        for cands in candidates:
            answers = [normalized_answer(c, self.answer_pattern) for c in cands]
            scores = agreement_scores(answers, self.low, self.high)
            out.append([CandidateJudgments([f"self-consistency: {sum(b == a for b in answers) - 1} of {len(answers) - 1} others "
                                  f"agree. {self.score_marker} {s:.2f}"], [s]) for a, s in zip(answers, scores)])
        return out
