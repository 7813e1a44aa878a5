"""Fully sharded training (trainer=fsdp): torch's FSDP2 `fully_shard` through Lightning's ModelParallelStrategy.

During a fit, every decoder layer (the classes a Hugging Face model lists in `_no_split_modules`) and
then the root are sharded over all ranks. Parameters, gradients and optimizer state are split W
ways, and each layer is gathered only while it computes. That is what makes full fine-tuning fit
when Adam's ~16 bytes per parameter would not fit one device.

Outside the fits the loop needs the whole model on every rank: generation, judging and DPO's
reference log-probs all use it. So at the end of training the full weights are gathered one tensor
at a time to the CPU (`gather_full_state_dict`, while the shards are still on their devices) and
loaded into a plain copy of the model (`unsharded_copy`). The model must therefore fit one device
for inference.

Why FSDP2 rather than Lightning's FSDPStrategy (FSDP1): sharding is per parameter, so LoRA's frozen
and trainable weights need no flat-parameter workarounds, and the state dict keeps the model's own
key names. It also runs on CPU with gloo, so the test suite runs the same code as a GPU cluster.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import torch
from torch import nn

log = logging.getLogger(__name__)


def fsdp_strategy(world_size: int):
    """Lightning's ModelParallelStrategy as pure data-parallel sharding over all `world_size` ranks."""
    from pytorch_lightning.strategies import ModelParallelStrategy

    return ModelParallelStrategy(data_parallel_size=world_size, tensor_parallel_size=1)


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def _base_model(model: nn.Module) -> nn.Module:
    """The transformers model under a peft wrapper (whose own class lists no layers)."""
    unwrap = getattr(model, "get_base_model", None)  # a PEFT model's (nn.Module's typing does not know the method)
    return unwrap() if unwrap is not None else model


def layer_classes(model: nn.Module) -> set[str]:
    """Names of the classes sharded as units: the model's decoder layers."""
    names = set(getattr(_base_model(model), "_no_split_modules", None) or ())
    present = {type(m).__name__ for m in model.modules()} & names
    if not present:
        raise ValueError(
            f"trainer=fsdp: {type(_base_model(model)).__name__} names no decoder layer classes present in the model "
            f"(_no_split_modules={sorted(names) or None}), so there is nothing to shard layer by layer; "
            "use trainer=ddp for this architecture"
        )
    return present


def shard(model: nn.Module, mesh) -> nn.Module:
    """FSDP2 in place: each decoder layer is its own unit, then the root (embeddings, norm, head;
    tied input/output embeddings stay one parameter because both live in the root unit)."""
    from torch.distributed.fsdp import fully_shard

    names = layer_classes(model)
    layers = [m for m in model.modules() if type(m).__name__ in names]
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    log.info("fully sharded %d %s layers over %d ranks", len(layers), "/".join(sorted(names)), mesh.size())
    return model


def gather_full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every rank gets the whole state dict on the CPU, gathered one tensor at a time (so device
    memory grows by one full tensor at most). A collective: all ranks must call it."""
    from torch.distributed.tensor import DTensor

    full = {}
    for name, value in model.state_dict().items():
        if isinstance(value, DTensor):
            value = value.full_tensor()
        full[name] = value.detach().to("cpu", copy=True)
    return full


def unsharded_copy(rebuild: Callable[[], nn.Module], state_dict: dict[str, torch.Tensor]) -> Any:
    """A plain model with the gathered weights: `rebuild()` gives one of the same structure
    (LoRA adapters included), and every one of its tensors must be in `state_dict`."""
    model = rebuild()
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise RuntimeError(
            f"the gathered FSDP state dict does not fit the rebuilt model: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}; the rebuilt model must have the structure that was trained (LoRA settings included)"
        )
    return model
