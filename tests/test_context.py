"""Sequence budgets follow the model: `auto` is its context, a number beyond it is refused with the key
named, and a model that declares no context needs a number (models/context.py)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from srlm_exp.checks import ConfigError
from srlm_exp.models.context import context_length, sequence_budget


def model_with(**config) -> SimpleNamespace:
    return SimpleNamespace(config=SimpleNamespace(**config))


@pytest.mark.parametrize("config,expected", [
    ({"max_position_embeddings": 4096}, 4096),   # Llama, Qwen2
    ({"n_positions": 1024}, 1024),               # GPT-2
    ({"hidden_size": 64}, None),                 # declares none
])
def test_context_length_reads_each_family_s_key(config, expected):
    assert context_length(SimpleNamespace(**config)) == expected


def test_auto_is_the_model_s_context_and_a_number_within_it_is_kept():
    model = model_with(n_positions=2048)
    assert sequence_budget("auto", model, "seed_sft.max_len") == 2048
    assert sequence_budget(768, model, "seed_sft.max_len") == 768


def test_a_budget_beyond_the_context_names_the_key_and_the_fix():
    with pytest.raises(ConfigError, match=r"train\.max_len: is 4096, beyond the model's 2048 positions; set train\.max_len=auto"):
        sequence_budget(4096, model_with(max_position_embeddings=2048), "train.max_len")


def test_auto_needs_a_declared_context():
    with pytest.raises(ConfigError, match=r"seed_sft\.max_len: is auto, but the model's config declares no context"):
        sequence_budget("auto", model_with(hidden_size=64), "seed_sft.max_len")
    assert sequence_budget(512, model_with(hidden_size=64), "seed_sft.max_len") == 512
