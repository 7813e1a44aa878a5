"""FSDP2 sharding and the gather back to a plain model (srlm_exp/training/sharding.py), in a real
two-process gloo group: the gathered weights are exactly the model's, for three architectures, with
LoRA and tied embeddings."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import spawn_ranks
from srlm_exp.training.sharding import layer_classes


def tiny_model(arch: str = "llama", lora: bool = False):
    """Two layers of each architecture, input and output embeddings tied."""
    from transformers import (GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config,
                              Qwen2ForCausalLM)

    from srlm_exp.models.lora import apply_lora

    torch.manual_seed(0)
    common = dict(vocab_size=48, tie_word_embeddings=True)
    if arch == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=2, n_head=2, n_positions=32, **common))
    else:
        config_cls, model_cls = (LlamaConfig, LlamaForCausalLM) if arch == "llama" else (Qwen2Config, Qwen2ForCausalLM)
        model = model_cls(config_cls(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     num_key_value_heads=2, **common))
    if lora:
        model = apply_lora(model, {"r": 2, "alpha": 4, "dropout": 0.0, "target_modules": "all-linear"})
        for name, p in model.named_parameters():  # non-zero B, so the adapters change the output
            if "lora_B" in name:
                nn.init.normal_(p)
    return model.eval()


def _shard_and_gather(rank: int, port: int, arch: str, lora: bool, results) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from srlm_exp.training.sharding import gather_full_state_dict, is_sharded, shard, unsharded_copy

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        model = tiny_model(arch, lora)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        ids = torch.arange(12).view(2, 6)
        with torch.no_grad():
            logits = model(input_ids=ids).logits
        shard(model, init_device_mesh("cpu", (2,)))
        local = sum(p.to_local().numel() for p in model.parameters())
        full = gather_full_state_dict(model)
        copy = unsharded_copy(lambda: tiny_model(arch, lora), {k: v.clone() for k, v in full.items()})
        with torch.no_grad():
            copy_logits = copy.eval()(input_ids=ids).logits
        results.put((rank, is_sharded(model), local < sum(v.numel() for v in before.values()),
                     full.keys() == before.keys() and all(torch.equal(full[k], before[k]) for k in before),
                     torch.equal(copy_logits, logits), is_sharded(copy)))
    except Exception as e:  # reported, not left to the test's queue timeout
        results.put((rank, repr(e)))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("arch,lora", [("llama", False), ("llama", True), ("qwen2", False), ("gpt2", False)],
                         ids=["llama", "llama-lora", "qwen2", "gpt2"])
def test_sharded_model_gathers_back_to_exactly_its_weights(arch, lora):
    got = spawn_ranks(_shard_and_gather, arch, lora)
    # Each rank: sharded (holding less than the whole), gathers the exact original weights, and the
    # plain copy computes the original logits.
    assert got == [(0, True, True, True, True, False), (1, True, True, True, True, False)]


def test_a_model_without_layer_classes_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="use trainer=ddp"):
        layer_classes(nn.Sequential(nn.Linear(2, 2)))


def test_layer_classes_are_found_under_a_peft_wrapper():
    assert layer_classes(tiny_model(lora=True)) == {"LlamaDecoderLayer"}
