"""What the loop asks of a judge option (conf/judge/*.yaml): scores for AIFT(M(t))'s candidates.

Two concepts meet in a judge option, and they are kept apart:
- the **scorer** the loop uses (`Scorer.judge_in_loop`): a judge prompt sampled from the policy or a teacher,
  the seed data's grader, the candidates' votes, an implicit or trained reward, an ensemble, a composite;
- the **judge prompt** the model itself learns (EFT) and is evaluated with as a judge (`model_judge()`, a
  `judging/judge.py:Judge`). A judge prompt is one kind of scorer; every other option extends one
  (`defaults: - additive5` in its YAML), and `judge.py:ScorerWithJudgePrompt` builds it from the same keys, so that
  `judge.num_judgments=...` and the other prompt settings mean the same for every option.
"""
from __future__ import annotations

from typing import Sequence

from srlm_exp.records import CandidateJudgments


def flat_candidates(instructions: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
    """Every (instruction, candidate), prompt by prompt: the order in which a scorer batches them."""
    return [(instruction, c) for instruction, cands in zip(instructions, candidates, strict=True) for c in cands]


def regrouped(candidates: Sequence[Sequence[str]],
              judged: Sequence[Sequence[tuple[str, float]]]) -> list[list[CandidateJudgments]]:
    """One CandidateJudgments per candidate, from each flat candidate's (text, score) judgments in
    `flat_candidates`' order."""
    flat = iter(judged)
    out = [[CandidateJudgments([t for t, _ in js], [s for _, s in js]) for js in (next(flat) for _ in cands)]
           for cands in candidates]
    if next(flat, None) is not None:
        raise ValueError("more judged candidates than candidates")
    return out


class Scorer:
    """Scores every candidate of every instruction of one AIFT set."""

    name: str
    # Writes pointwise judgments of its own ("... Score: N", one per candidate) that a meta-judge can compare.
    pointwise_judgments: bool = False

    def judge_in_loop(self, policy, tokenizer, instructions: Sequence[str], candidates: Sequence[Sequence[str]],
                      models, iteration: int, batch_size: int = 32) -> list[list[CandidateJudgments]]:
        """Score AIFT(M(t)) (t = `iteration`); `policy` is M(t), `models` the run's ModelStore (scorers that
        need other models, M(t-1) or a trained reward model, load them through it)."""
        raise NotImplementedError

    def model_judge(self) -> Scorer:
        """The judge prompt the model learns (EFT) and is evaluated with: a judging.judge.Judge."""
        raise NotImplementedError

    def loop_report(self) -> dict | None:
        """What this scorer reports about its last judge_in_loop call (components, disagreement), or None."""
        return None
