"""LoRA: a saved adapter really comes back (SPEC §3: "loading the previous LoRA adapter silently
doing nothing"), the DPO reference is the same model with adapters disabled, merging keeps the
function, and Lightning checkpoints hold the adapters only."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from test_losses import sequence_logps

from srlm_exp.models.lora import (AdapterLoadError, apply_lora, is_lora, load_adapter, merged_copy_if_lora,
                                  reference_context, save_adapter)
from srlm_exp.training.sft import SFTModule

LORA = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"}


@pytest.fixture
def base_dir(tmp_path):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    LlamaForCausalLM(config).save_pretrained(str(tmp_path / "base"))
    return tmp_path / "base"


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 97, (3, 12), generator=g)
    labels = ids.clone()
    labels[:, :5] = -100  # prompt tokens carry no log-prob
    return ids, labels


def base(path):
    return AutoModelForCausalLM.from_pretrained(str(path)).eval()


@torch.no_grad()
def logps(model, batch) -> torch.Tensor:
    ids, labels = batch
    return sequence_logps(model(input_ids=ids).logits, labels)


def trained_lora(path):
    """Base + adapters moved away from their no-op init (LoRA B starts at zero), as training would."""
    model = apply_lora(base(path), LORA)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


def test_reloaded_adapter_gives_the_saved_log_probs_and_not_the_base_ones(base_dir, batch, tmp_path):
    base_lp = logps(base(base_dir), batch)
    model = trained_lora(base_dir)
    saved_lp = logps(model, batch)
    assert not torch.allclose(saved_lp, base_lp, atol=1e-3), "the adapter must change the model for this test to mean anything"

    adapter = save_adapter(model, tmp_path / "adapter")
    assert {p.name for p in adapter.iterdir()} <= {"adapter_config.json", "adapter_model.safetensors", "README.md"}
    assert all("lora_" in k for k in load_file(str(adapter / "adapter_model.safetensors")))  # no base weights

    reloaded = load_adapter(base(base_dir), adapter).eval()
    assert is_lora(reloaded)
    reloaded_lp = logps(reloaded, batch)
    torch.testing.assert_close(reloaded_lp, saved_lp, atol=1e-5, rtol=0)
    assert not torch.allclose(reloaded_lp, base_lp, atol=1e-3)
    # Trainable again (resuming trains the adapters), and only them.
    trainable = [n for n, p in reloaded.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_an_adapter_that_lands_nowhere_is_an_error_not_a_silent_base_model(base_dir, tmp_path):
    adapter = save_adapter(trained_lora(base_dir), tmp_path / "adapter")
    weights = adapter / "adapter_model.safetensors"
    # Key names from another wrapping (or peft version): from_pretrained alone would keep B = 0.
    save_file({k.replace("layers", "blocks"): v for k, v in load_file(str(weights)).items()}, str(weights))
    with pytest.raises(AdapterLoadError, match="was not loaded"):
        load_adapter(base(base_dir), adapter)


def test_missing_adapter_dir_is_a_clear_error(base_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_adapter(base(base_dir), tmp_path / "nowhere")


def test_reference_is_the_same_model_with_adapters_disabled(base_dir, batch):
    base_lp = logps(base(base_dir), batch)
    model = trained_lora(base_dir)
    with reference_context(model):
        torch.testing.assert_close(logps(model, batch), base_lp, atol=1e-5, rtol=0)
    assert not torch.allclose(logps(model, batch), base_lp, atol=1e-3)  # adapters back on afterwards


def test_merged_model_is_plain_and_computes_the_same(base_dir, batch):
    model = trained_lora(base_dir)
    lp = logps(model, batch)
    merged = merged_copy_if_lora(model)
    assert not is_lora(merged) and isinstance(merged, LlamaForCausalLM)
    torch.testing.assert_close(logps(merged, batch), lp, atol=1e-4, rtol=0)


def test_lightning_checkpoint_of_a_lora_module_holds_adapters_only(base_dir):
    module = SFTModule(trained_lora(base_dir))
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    keys = list(checkpoint["state_dict"])
    assert keys and all("lora_" in k for k in keys)
    assert module.strict_loading is False
    # A plain model's checkpoint is left whole.
    plain = SFTModule(base(base_dir))
    full = {"state_dict": plain.state_dict()}
    plain.on_save_checkpoint(full)
    assert len(full["state_dict"]) == len(plain.state_dict())
