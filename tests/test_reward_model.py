"""judge=reward_model (InstructGPT): the C(K,2)-in-one-batch ranking loss on hand numbers, grouped and
shuffled pairs giving the same loss, and the smoke loop judged by a reward model trained on the world's
ranked sets."""
from __future__ import annotations

import json
import math
import random

import pytest
import torch

from conftest import compose, run_job
from srlm_exp.artifacts import read_jsonl
from srlm_exp.config import ConfigError, validate
from srlm_exp.judging.reward_model import HEAD_FILE, RewardModel, ranked_pair_loss, ranked_pairs


def test_every_differently_ranked_pair_of_a_group_and_no_tie():
    # group 0: scores 3, 1, 3 (a tie between rows 0 and 2); group 1: scores 0, 2
    assert sorted(ranked_pairs([0, 0, 0, 1, 1], [3, 1, 3, 0, 2])) == [(0, 1), (2, 1), (4, 3)]


def test_loss_on_hand_numbers():
    rewards = torch.tensor([2.0, 0.0, 1.0, 0.5, -0.5])
    loss = ranked_pair_loss(rewards, [0, 0, 0, 1, 1], [3, 1, 3, 0, 2])
    # pairs (0,1): 2 - 0 = 2; (2,1): 1 - 0 = 1; (4,3): -0.5 - 0.5 = -1
    expected = -(math.log(1 / (1 + math.exp(-2))) + math.log(1 / (1 + math.exp(-1))) + math.log(1 / (1 + math.exp(1)))) / 3
    assert loss.item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="tie"):
        ranked_pair_loss(torch.zeros(2), [0, 0], [1, 1])


def test_grouped_and_shuffled_pairs_give_the_same_loss(tmp_path):
    """One forward per response with every pair of a set in the batch (InstructGPT's way) equals the mean
    over the same pairs forwarded one pair at a time, in any order."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    rm = RewardModel(LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                  num_attention_heads=4, max_position_embeddings=64))).eval()
    ids = torch.randint(0, 50, (6, 7))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0  # one right-padded row: its reward is read at its own last token
    groups, scores = [0, 0, 0, 1, 1, 1], [2, 0, 1, 5, 5, 3]
    with torch.no_grad():
        grouped = ranked_pair_loss(rm(ids, mask), groups, scores)
        pairs = ranked_pairs(groups, scores)
        random.Random(0).shuffle(pairs)
        one_by_one = []
        for w, l in pairs:
            r = rm(torch.stack([ids[w], ids[l]]), torch.stack([mask[w], mask[l]]))
            one_by_one.append(ranked_pair_loss(r, [0, 0], [1, 0]))
    assert grouped.item() == pytest.approx(torch.stack(one_by_one).mean().item(), abs=1e-6)


def test_bad_settings_and_data_without_rankings_are_config_errors():
    with pytest.raises(ConfigError, match=r"judge\.init"):
        validate(compose(["debug=smoke", "judge=reward_model", "judge.init=m7"]))
    with pytest.raises(ConfigError, match="RankedResponses"):
        validate(compose(["judge=reward_model", "data=oasst", "prompts=fixed", "prompts.generator_path=x/y",
                          "model=hf", "model.name_or_path=org/model"]))


def test_smoke_loop_judged_by_a_reward_model(tmp_path):
    out = tmp_path / "run"
    run_job(["debug=smoke", "logger=none", f"hydra.run.dir={out}", "judge=reward_model"], tmp_path / "run.log")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and [e["iteration"] for e in summary["iterations"]] == [0, 1, 2, 3]
    rm_dir = out / "reward_model"
    assert (rm_dir / HEAD_FILE).exists() and (rm_dir / "config.json").exists()  # the backbone: a plain model dir
    quality = json.loads((rm_dir / "quality.json").read_text())
    assert quality["n_pairs"] > 0 and 0 <= quality["pairwise_acc"] <= 1 and quality["steps"] >= 1
    assert math.isfinite(quality["last_loss"])
    scores = [c["score"] for t in (2, 3) for r in read_jsonl(out / f"iteration_{t}" / "candidates.jsonl")
              for c in r["candidates"]]
    assert all(isinstance(s, float) for s in scores) and len(set(scores)) > 1  # a real number for every candidate
