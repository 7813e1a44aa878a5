"""train=reinforce: RLOO advantages, the loss and which candidates become rollouts, on hand numbers; the
smoke loop reaches M3 with it, with and without LoRA."""
from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import LORA_SMOKE, run_job
from movement import assert_moved_where_rewarded
from srlm_exp.records import CandidateJudgments, JudgedCandidate, PromptCandidates
from srlm_exp.training.reinforce import rloo_advantages, rloo_loss, rollouts


def test_rloo_advantage_is_the_reward_minus_the_mean_of_the_others():
    assert rloo_advantages([1.0, 2.0, 3.0]) == [1 - 2.5, 2 - 2.0, 3 - 1.5]
    assert rloo_advantages([4.0, 4.0]) == [0.0, 0.0]  # a tie teaches nothing
    assert sum(rloo_advantages([5.0, 0.0, 2.0, 1.0])) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="2 or more"):
        rloo_advantages([3.0])


def _cand(text, scores):
    return JudgedCandidate(text, 3, CandidateJudgments([f"Score: {s}" for s in scores], [float(s) for s in scores]))


def test_unscored_candidates_are_left_out_never_given_a_default_reward():
    rows = [PromptCandidates(0, "a", [_cand("x", [5, 3]), _cand("y", [float("nan")]), _cand("z", [1])]),
            PromptCandidates(1, "b", [_cand("u", [2]), _cand("v", [float("nan")])])]
    items, dropped = rollouts(rows)
    assert [(i["response"], i["reward"], i["advantage"]) for i in items] == [("x", 4.0, 3.0), ("z", 1.0, -3.0)]
    assert dropped == {"unscored_candidates": 2, "prompts_with_fewer_than_2_scored": 1}


def test_rloo_loss_and_its_gradient_on_hand_numbers():
    logps = torch.tensor([-2.0, -1.0], requires_grad=True)
    ref, adv = torch.tensor([-2.0, -2.0]), torch.tensor([1.0, -1.0])
    loss = rloo_loss(logps, ref, adv, kl_coef=0.5)
    # (-1 * -2 + 0.5 * 0^2 / 2) and (1 * -1 + 0.5 * 1^2 / 2), averaged
    assert loss.item() == pytest.approx((2.0 - 1.0 + 0.25) / 2)
    loss.backward()
    # d/dlogp: -A + kl_coef * (logp - ref), halved by the mean; the better sample goes up
    assert logps.grad.tolist() == pytest.approx([(-1 + 0.0) / 2, (1 + 0.5) / 2])


def test_the_kl_penalty_pulls_each_response_back_to_the_reference_from_either_side():
    """With no advantage, the penalty alone must move log pi(y) towards log pi_ref(y): down where the policy
    is above the reference, up where it is below, not at all at it. (A plain log-ratio term pushes all three
    down alike, which is no pull towards the reference at all.)"""
    logps = torch.tensor([-1.0, -3.0, -2.0], requires_grad=True)
    ref = torch.tensor([-2.0, -2.0, -2.0])
    rloo_loss(logps, ref, torch.zeros(3), kl_coef=1.0).backward()
    above, below, at = logps.grad.tolist()
    assert above > 0 and below < 0 and at == 0  # gradient descent: above goes down, below goes up
    assert rloo_loss(ref.clone(), ref, torch.zeros(3), kl_coef=1.0).item() == 0.0


# Under LoRA the smoke model's adapters learn no judge in 200 steps, so the oracle scores the candidates there.
@pytest.mark.parametrize("extra", [[], [*LORA_SMOKE, "judge=oracle"]], ids=["full", "lora"])
def test_smoke_loop_reaches_m3_with_reinforce(extra, tmp_path):
    job = tmp_path / "job"
    run_job(["debug=smoke", "logger=none", "train=reinforce", "train.max_steps=3", "train.min_examples=1",
             f"hydra.run.dir={job}", *extra], tmp_path / "log")
    summary = json.loads((job / "summary.json").read_text())
    assert summary["status"] == "finished" and [e["iteration"] for e in summary["iterations"]] == [0, 1, 2, 3]
    for t in (2, 3):
        trained = json.loads((job / f"iteration_{t}" / "training.json").read_text())
        assert trained["rollouts"] > 0 and not math.isnan(trained["rollouts"])
        assert (job / f"iteration_{t}" / "model" / "config.json").exists()
    assert_moved_where_rewarded(job)
