"""The DPO implicit reward as the judge (CREAM, Wang et al. 2025): a candidate's score is
beta * (log pi_t(y|x) - log pi_{t-1}(y|x)), the reward the step M(t-1) -> M(t) implicitly learned, with
M(t-1) as the reference (M0 when judging AIFT(M1)). No judgment is generated and no judge prompt is read:
the policy ranks its own candidates by how much its last training step raised their likelihood.

Log-probabilities are summed over the response tokens (and EOS), as in the DPO loss. The model is still
trained (EFT) and evaluated as a judge with the prompt this option extends.
"""
from __future__ import annotations

from typing import Sequence

from srlm_exp.chat import chat_example
from srlm_exp.checks import check, positive
from srlm_exp.judging.judge import ScorerWithJudgePrompt
from srlm_exp.judging.scorer import flat_candidates, regrouped
from srlm_exp.models.context import sequence_budget
from srlm_exp.records import CandidateJudgments
from srlm_exp.training.base import reference_pass
from srlm_exp.training.batching import collate_examples
from srlm_exp.training.shared_batches import response_logps


def implicit_rewards(policy_logps: Sequence[float], reference_logps: Sequence[float], beta: float) -> list[float]:
    """beta * (log pi_t - log pi_{t-1}) for each candidate."""
    return [beta * (p - r) for p, r in zip(policy_logps, reference_logps, strict=True)]


def summed_logps(model, examples, pad_id: int, batch_size: int) -> list[float]:
    """The summed response log-probability of every example under `model` (both models here are plain:
    the policy of the AIFT phase is merged, M(t-1) is loaded as a plain model)."""
    rows = reference_pass(model, examples, batch_size, lambda b: collate_examples(b, pad_id),
                          lambda m, batch: response_logps(m, batch)[0][:, None])
    return [lp for (lp,) in rows]


class ImplicitRewardJudge(ScorerWithJudgePrompt):
    """Scores in the loop only: it needs M(t-1) as well as M(t)."""

    def __init__(self, *args, beta: float = 0.1, **kwargs):
        check(positive(beta, "beta", "set beta > 0 (it scales the reward; the ranking does not depend on it)"))
        super().__init__(*args, **kwargs)
        self.beta = beta

    def judge_in_loop(self, policy, tokenizer, instructions: Sequence[str], candidates: Sequence[Sequence[str]],
                      models, iteration: int, batch_size: int = 32) -> list[list[CandidateJudgments]]:
        max_len = sequence_budget("auto", policy, "judge")
        examples = [chat_example(tokenizer, i, c, max_len, "judge") for i, c in flat_candidates(instructions, candidates)]
        policy_lp = summed_logps(policy, examples, tokenizer.pad_token_id, batch_size)
        reference = models.load(iteration - 1)
        try:
            reference_lp = summed_logps(reference, examples, tokenizer.pad_token_id, batch_size)
        finally:
            models.release(reference)
        rewards = implicit_rewards(policy_lp, reference_lp, self.beta)
        return regrouped(candidates, [[(f"implicit reward: {self.beta} * ({lp:.3f} - {ref:.3f}) = {r:.4f}. "
                                        f"{self.score_marker} {r:.4f}", r)]
                                      for lp, ref, r in zip(policy_lp, reference_lp, rewards)])
