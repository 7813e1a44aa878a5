"""train=ppo (InstructGPT): GAE, the clipped surrogate (both branches), the clipped value loss and the per-token
KL penalty on hand numbers; the smoke loop reaches M3 with PPO, with and without LoRA."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import compose, run_job
from srlm_exp.checks import ConfigError
from srlm_exp.config import validate
from srlm_exp.training.ppo import (VALUE_HEAD_FILE, clipped_policy_loss, clipped_value_loss, gae, kl_penalized_rewards,
                                   response_mask)


def test_kl_penalty_per_token_and_the_score_on_the_last_token():
    rewards = kl_penalized_rewards(2.0, logps=[-1.0, -2.0, -0.5], ref_logps=[-1.5, -2.0, -1.0], beta=0.1)
    assert rewards == pytest.approx([-0.05, 0.0, -0.05 + 2.0])


def test_gae_on_hand_numbers():
    # gamma = 1, lambda = 0.5; values [1, 2], rewards [0, 3]; V after the end = 0
    # delta_1 = 3 + 0 - 2 = 1 -> A_1 = 1; delta_0 = 0 + 2 - 1 = 1 -> A_0 = 1 + 0.5 * 1 = 1.5
    advantages, returns = gae([0.0, 3.0], [1.0, 2.0], gamma=1.0, lam=0.5)
    assert advantages == pytest.approx([1.5, 1.0]) and returns == pytest.approx([2.5, 3.0])
    # lambda = 1, gamma = 1: the advantage is the sum of future rewards minus the value (Monte Carlo)
    advantages, _ = gae([1.0, 1.0, 1.0], [0.5, 0.0, 0.0], gamma=1.0, lam=1.0)
    assert advantages == pytest.approx([2.5, 2.0, 1.0])


def test_clipped_surrogate_takes_the_pessimistic_branch():
    mask = torch.ones(1, 4)
    old = torch.zeros(1, 4)
    # ratios e^0.5 ~ 1.65 and e^-0.5 ~ 0.61, each with a positive and a negative advantage
    logps = torch.tensor([[0.5, 0.5, -0.5, -0.5]])
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    r_hi, r_lo = torch.exp(torch.tensor(0.5)).item(), torch.exp(torch.tensor(-0.5)).item()
    # A > 0, ratio > 1 + eps: clipped (-1.2); A < 0, ratio > 1 + eps: unclipped (+1.65);
    # A > 0, ratio < 1 - eps: unclipped (-0.61); A < 0, ratio < 1 - eps: clipped (+0.8)
    expected = (-1.2 + r_hi - r_lo + 0.8) / 4
    assert clipped_policy_loss(logps, old, adv, mask, clip=0.2).item() == pytest.approx(expected, abs=1e-6)
    # inside the clip range both branches agree: -A * ratio
    small = torch.tensor([[0.1, 0.0, 0.0, 0.0]])
    assert clipped_policy_loss(small, old, torch.ones(1, 4), mask, 0.2).item() == pytest.approx(
        -(torch.exp(torch.tensor(0.1)).item() + 3) / 4)
    # masked tokens do not count
    assert clipped_policy_loss(logps, old, adv, torch.tensor([[1.0, 0, 0, 0]]), 0.2).item() == pytest.approx(-1.2)


def test_clipped_value_loss_on_hand_numbers():
    mask = torch.ones(1, 2)
    values, old, returns = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 1.0]])
    # token 0: unclipped (1-2)^2 = 1, clipped V = 0.2: (0.2-2)^2 = 3.24 -> max 3.24; token 1: 1 and 1 -> 1
    assert clipped_value_loss(values, old, returns, mask, clip=0.2).item() == pytest.approx(0.5 * (3.24 + 1) / 2)


def test_response_mask_marks_the_tokens_predicted_from_earlier_positions():
    labels = torch.tensor([[-100, -100, 7, 8, -100]])
    assert response_mask(labels).tolist() == [[False, False, True, True, False]]


def test_bad_settings_are_config_errors():
    for override, key in [("train.reference=m2", "train.reference"), ("train.gamma=0", "train.gamma"),
                          ("train.lam=1.5", "train.lam"), ("train.clip=0", "train.clip"), ("train.beta=-1", "train.beta")]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            validate(compose(["debug=smoke", "train=ppo", override]))


# Under LoRA the smoke model's adapters learn no judge in 200 steps, so the oracle scores the candidates there.
@pytest.mark.parametrize("extra", [[], ["model.lora.enabled=true", "judge=oracle"]], ids=["full", "lora"])
def test_smoke_loop_reaches_m3_with_ppo(extra, tmp_path):
    out = tmp_path / "run"
    run_job(["debug=smoke", "logger=none", f"hydra.run.dir={out}", "train=ppo", *extra], tmp_path / "run.log")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and [e["iteration"] for e in summary["iterations"]] == [0, 1, 2, 3]
    for t in (2, 3):
        trained = json.loads((out / f"iteration_{t}" / "training.json").read_text())
        assert trained["rollouts"] > 0
        assert (out / f"iteration_{t}" / VALUE_HEAD_FILE).exists()       # the value head, apart from the policy
        assert not (out / f"iteration_{t}" / "model" / VALUE_HEAD_FILE).exists()
    head = torch.load(out / "iteration_3" / VALUE_HEAD_FILE)
    assert head["weight"].abs().sum() > 0  # the value head learned (it starts at zero)
