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
