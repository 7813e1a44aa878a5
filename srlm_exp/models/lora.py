"""LoRA through peft: train adapters only, use the adapter-disabled model as the DPO reference,
merge at the end of an iteration so every M(t) is a plain model directory."""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any, cast

import torch

from omegaconf import DictConfig, OmegaConf
from srlm_exp.artifacts import atomic_path


def is_lora(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # peft is a dependency, but keep plain models working without it
        return False
    return isinstance(model, PeftModel)


def apply_lora(model: Any, lora_cfg: DictConfig | dict) -> Any:
    """Wrap `model` with fresh LoRA adapters as configured (r, alpha, dropout, target_modules)."""
    from peft import LoraConfig, get_peft_model

    c = cast(dict, OmegaConf.to_container(lora_cfg, resolve=True)) if isinstance(lora_cfg, DictConfig) else dict(lora_cfg)
    c.pop("enabled", None)
    config = LoraConfig(
        r=c.get("r", 16),
        lora_alpha=c.get("alpha", 32),
        lora_dropout=c.get("dropout", 0.05),
        target_modules=c.get("target_modules", "all-linear"),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def merged_copy_if_lora(model: Any) -> Any:
    """The plain model to save: LoRA weights merged into the base (in place), else the model itself."""
    return model.merge_and_unload() if is_lora(model) else model


def reference_context(model: Any):
    """Context in which `model` computes the reference policy: the base with adapters disabled
    under LoRA (no second copy), or the model as it is."""
    return model.disable_adapter() if is_lora(model) else nullcontext()


class AdapterLoadError(RuntimeError):
    """A saved adapter did not end up in the model (the silent no-op of SPEC §3)."""


def save_adapter(model: Any, out_dir: str | Path) -> Path:
    """Save only the LoRA adapter (config + adapter weights, not the frozen base), atomically."""

    if not is_lora(model):
        raise TypeError(f"save_adapter needs a peft model with LoRA adapters, got {type(model).__name__}")
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(str(tmp))
    return Path(out_dir)


def load_adapter(base_model: Any, adapter_dir: str | Path) -> Any:
    """Wrap `base_model` with the adapter saved in `adapter_dir`, trainable, and check it arrived.

    Every saved tensor must equal the model's own copy afterwards: a key-name mismatch (another
    peft version, a wrapped model, a wrong adapter name) would otherwise leave the fresh, zero-B
    adapter in place and every iteration would restart from the base model without a word.
    """
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict, load_peft_weights

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        raise FileNotFoundError(f"{adapter_dir} holds no adapter (adapter_config.json missing)")
    model = PeftModel.from_pretrained(base_model, str(adapter_dir), is_trainable=True)
    saved = load_peft_weights(str(adapter_dir), device="cpu")
    loaded = get_peft_model_state_dict(model)
    missing = sorted(set(saved) - set(loaded))
    differing = [k for k in saved if k in loaded and not torch.equal(saved[k].float(), loaded[k].detach().cpu().float())]
    if not saved or missing or differing:
        raise AdapterLoadError(
            f"adapter {adapter_dir} was not loaded: {len(saved)} saved tensors, {len(missing)} without a place in the "
            f"model (e.g. {missing[:2]}), {len(differing)} with other values (e.g. {differing[:2]})"
        )
    return model


def adapter_only(state_dict: dict[str, Any], module: torch.nn.Module) -> dict[str, Any]:
    """The trainable entries of a Lightning checkpoint's state_dict: the adapters under LoRA,
    so checkpoints do not carry the frozen base (load them with strict_loading=False)."""
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    return {k: v for k, v in state_dict.items() if k in trainable}
