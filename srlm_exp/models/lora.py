"""LoRA through peft: train adapters only, use the adapter-disabled model as the DPO reference,
merge at the end of an iteration so every M(t) is a plain model directory."""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from omegaconf import DictConfig, OmegaConf


def is_lora(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # peft is a dependency, but keep plain models working without it
        return False
    return isinstance(model, PeftModel)


def apply_lora(model: Any, lora_cfg: DictConfig | dict) -> Any:
    """Wrap `model` with fresh LoRA adapters as configured (r, alpha, dropout, target_modules)."""
    from peft import LoraConfig, get_peft_model

    c = OmegaConf.to_container(lora_cfg, resolve=True) if isinstance(lora_cfg, DictConfig) else dict(lora_cfg)
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
