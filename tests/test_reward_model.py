"""judge=reward_model (InstructGPT): the C(K,2)-in-one-batch ranking loss on hand numbers, grouped and
shuffled pairs giving the same loss, and the smoke loop judged by a reward model trained on the world's
ranked sets."""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from conftest import compose, run_job
from srlm_exp.artifacts import read_jsonl
from srlm_exp.checks import ConfigError
from srlm_exp.config import validate
from srlm_exp.data.oasst import OasstSeedData
from srlm_exp.data.seed_data import RankedResponses
from srlm_exp.judging.reward_model import RewardModelJudge
from srlm_exp.training.reward_model import HEAD_FILE, RewardModel, ranked_pair_loss, ranked_pairs
from srlm_exp.world.source import WorldSeedData

OASST_FIXTURE = Path(__file__).parent / "fixtures" / "oasst" / "oasst1_sample.jsonl"


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
        for better, worse in pairs:
            r = rm(torch.stack([ids[better], ids[worse]]), torch.stack([mask[better], mask[worse]]))
            one_by_one.append(ranked_pair_loss(r, [0, 0], [1, 0]))
    assert grouped.item() == pytest.approx(torch.stack(one_by_one).mean().item(), abs=1e-6)


class UnrankedWorld(WorldSeedData):
    """Seed data without ranked sets (the world with that capability taken away)."""

    ranked_sets = None


def test_bad_settings_and_data_without_rankings_are_config_errors():
    with pytest.raises(ConfigError, match=r"judge\.init"):
        validate(compose(["debug=smoke", "judge=reward_model", "judge.init=m7"]))
    with pytest.raises(ConfigError, match="judge=reward_model needs RankedResponses"):
        validate(compose(["debug=smoke", "judge=reward_model", "data._target_=test_reward_model.UnrankedWorld"]))
    validate(compose(["debug=smoke", "judge=reward_model"]))  # the world offers its EFT sets


def test_open_assistant_offers_its_human_ranked_sets_apart_from_the_held_out_ones(tmp_path):
    data = OasstSeedData("oasst", str(OASST_FIXTURE), seed=0, sizes={"ift": 4, "eval": 2, "judge_eval": 2}).build(tmp_path)
    assert isinstance(data, RankedResponses)
    sets = data.ranked_sets()
    assert sets and all(len(set(s["scores"])) >= 1 and len(s["responses"]) == len(s["scores"]) for s in sets)
    held_out = {s["instruction"] for s in data.judge_eval_sets()}
    assert not held_out & {s["instruction"] for s in sets}


def test_retraining_needs_a_grader():
    class RankedOnly:
        def ranked_sets(self):
            return []

    with pytest.raises(ConfigError, match="retrain_each_iteration"):
        RewardModelJudge("reward_model", "<INSTRUCTION_HERE> <RESPONSE_HERE>", ranked_data=RankedOnly(),
                         retrain_each_iteration=True)


@pytest.mark.parametrize("retrain", [False, True], ids=["frozen", "retrained"])
def test_smoke_loop_judged_by_a_reward_model(retrain, tmp_path):
    out = tmp_path / "run"
    run_job(["debug=smoke", "logger=none", f"hydra.run.dir={out}", "judge=reward_model",
             f"judge.retrain_each_iteration={str(retrain).lower()}"], tmp_path / "run.log")
    # Retrained: AIFT(M2) is judged by a reward model trained further on AIFT(M1)'s grader-ranked candidates.
    assert (out / "iteration_3" / "reward_model" / HEAD_FILE).exists() == retrain
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and [e["iteration"] for e in summary["iterations"]] == [0, 1, 2, 3]
    rm_dir = out / "reward_model"
    assert (rm_dir / HEAD_FILE).exists() and (rm_dir / "config.json").exists()  # the backbone: a plain model dir
    quality = json.loads((rm_dir / "quality.json").read_text())
    assert quality["n_pairs"] > 0 and 0 <= quality["pairwise_acc"] <= 1 and quality["steps"] >= 1
    assert math.isfinite(quality["last_loss"])
    summary_quality = summary["iterations"][2]["judge_report"]["reward_model_quality"]  # in the summary too
    assert summary_quality["pairwise_acc"] == pytest.approx(quality["pairwise_acc"])
    scores = [c["score"] for t in (2, 3) for r in read_jsonl(out / f"iteration_{t}" / "candidates.jsonl")
              for c in r["candidates"]]
    assert all(isinstance(s, float) for s in scores) and len(set(scores)) > 1  # a real number for every candidate
