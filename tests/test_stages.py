"""The fit's callbacks: M(t) is saved once and handed to the generation phase whatever order Lightning
calls them in; and every stage reports what it trained on."""
from __future__ import annotations

import json
from types import SimpleNamespace

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from srlm_exp.generation.callback import SelfRewardCallback
from srlm_exp.training.save_callback import SaveModelCallback


class _CountingTokenizer:
    saves = 0

    def save_pretrained(self, path):
        type(self).saves += 1


def _fit_end(order, tmp_path):
    model = LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    trainer = SimpleNamespace(is_global_zero=True, strategy=SimpleNamespace(root_device=torch.device("cpu")))
    module = SimpleNamespace(model=model)
    _CountingTokenizer.saves = 0
    saved = SaveModelCallback(tmp_path / "model", _CountingTokenizer(), rebuild=lambda: None)
    got = []
    phase = SelfRewardCallback(lambda m: got.append(m) or {"pairs": {"n": 0}}, saved)
    callbacks = {"save": saved, "phase": phase}
    for name in order:
        callbacks[name].on_fit_end(trainer, module)
    return model, saved, phase, got


def test_generation_gets_the_saved_model_in_either_callback_order(tmp_path):
    for order in (("save", "phase"), ("phase", "save")):
        model, saved, phase, got = _fit_end(order, tmp_path / "-".join(order))
        assert _CountingTokenizer.saves == 1, order  # saved once
        assert (tmp_path / "-".join(order) / "model" / "config.json").exists()
        assert got == [model] and saved.model is model and phase.stats == {"pairs": {"n": 0}}


def test_every_model_entry_says_what_its_stage_trained_on(smoke_run):
    entries = json.loads((smoke_run / "summary.json").read_text())["iterations"]
    assert "training" not in entries[0]
    assert set(entries[1]["training"]) == {"ift", "eft"} and entries[1]["training"]["ift"] > 0
    for e in entries[2:]:
        assert e["training"] == {"pairs": e["pairs"]["n"], "replayed": 0}  # no experience replay by default


def _unjudged_aift_data(tmp_path, parse_rate):
    """AIFT data whose candidates have no parsed score (a judge never taught its format) and no pair."""
    from srlm_exp.records import CandidateJudgments, JudgedCandidate, PromptCandidates

    rows = [PromptCandidates(i, f"Write about topic {i}.", [JudgedCandidate(f"answer {k}", 3, CandidateJudgments(
        ["and then the answer goes on"], [float("nan")])) for k in range(2)]) for i in range(4)]
    (tmp_path / "candidates.jsonl").write_text("".join(json.dumps(r.to_json()) + "\n" for r in rows))
    (tmp_path / "pairs.jsonl").write_text("")
    (tmp_path / "stats.json").write_text(json.dumps({"generated": {"parse_rate": parse_rate}}))


def test_every_aift_stage_with_too_little_data_says_whether_the_judge_or_the_sample_size_is_to_blame(tmp_path):
    """No parsed judgment (M1 trained without EFT) is not fixed by more prompts; the error says so and names
    stats.json's parse rate, for DPO, SFT on the top candidate, RLOO and PPO alike."""
    import pytest

    from srlm_exp.training.dpo import DPOStage, NotEnoughPairsError
    from srlm_exp.training.ppo import PPOStage
    from srlm_exp.training.reinforce import ReinforceStage
    from srlm_exp.training.sft import TopCandidateSFTStage
    from srlm_exp.training.stage import StageInputs, TooLittleAIFTData

    model = LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64))
    stages = [DPOStage(min_examples=1), TopCandidateSFTStage(min_examples=1), ReinforceStage(min_examples=1),
              PPOStage(min_examples=1)]
    for parse_rate, named, not_named in ((0.0, "data.eft=true", "prompts.n_prompts"),
                                         (0.9, "prompts.n_prompts", "data.eft=true")):
        data = tmp_path / str(parse_rate)
        data.mkdir()
        _unjudged_aift_data(data, parse_rate)
        inputs = StageInputs(tokenizer=None, iteration=2, seed=0, data_dir=data, seed_data=None, judge=None,
                             run_fit=None, load_model=None, release=lambda m: None)
        for stage in stages:
            with pytest.raises(TooLittleAIFTData) as e:
                stage.fit(model, inputs)
            message = str(e.value)
            assert "fewer than train.min_examples=1" in message and str(data / "stats.json") in message, message
            assert named in message and not_named not in message, (type(stage).__name__, message)
            if parse_rate == 0.0:
                assert "parsed in only 0.0% of its judgments" in message
            assert isinstance(e.value, NotEnoughPairsError) == isinstance(stage, DPOStage)
