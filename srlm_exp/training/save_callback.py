"""The end of every fit: the trained model becomes a plain model directory before anything uses it."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytorch_lightning as pl
from torch import nn

from srlm_exp import distributed
from srlm_exp.models.loading import save_model
from srlm_exp.models.lora import is_lora, merged_copy_if_lora, save_adapter
from srlm_exp.training.sharding import gather_full_state_dict, is_sharded, unsharded_copy


class SaveModelCallback(pl.Callback):
    """Saves the trained model as a plain directory (LoRA merged, adapter beside it) when the fit ends.
    `finalize()` does that once and returns the plain model, whichever callback asks first (the
    generation phase asks for it to generate with M(t)), and `model` holds it afterwards.

    Under trainer=fsdp each rank ends training with only a shard of the model. The full weights are
    gathered in `on_train_end`, while the shards are still on their devices and before Lightning's
    teardown. In `on_fit_end` they are loaded into `rebuild()`, a fresh model of the trained
    structure (for the loop: M(t-1) loaded again, with its LoRA adapters)."""

    def __init__(self, out_dir: Path, tokenizer, rebuild: Callable[[], nn.Module]):
        self.out_dir, self.tokenizer, self.rebuild = Path(out_dir), tokenizer, rebuild
        self._gathered: dict | None = None
        self.model: nn.Module | None = None  # the saved plain model, once finalized

    def on_train_end(self, trainer, pl_module) -> None:
        if is_sharded(pl_module.model):
            self._gathered = gather_full_state_dict(pl_module.model)
            for optimizer in trainer.optimizers:  # the shards' Adam state is dead weight from here on
                optimizer.state.clear()
            pl_module.model.zero_grad(set_to_none=True)

    def on_fit_end(self, trainer, pl_module) -> None:
        self.finalize(trainer, pl_module)

    def finalize(self, trainer, pl_module) -> nn.Module:
        """Save M(t) (on the first call) and return it as a plain model."""
        if self.model is not None:
            return self.model
        if self._gathered is not None:
            pl_module.model, self._gathered = unsharded_copy(self.rebuild, self._gathered), None
        # Every rank merges its own (identical) copy, so the generation phase that follows runs the
        # saved model on all ranks; rank 0 alone writes (the adapter too: small, relative to M(t-1)).
        if trainer.is_global_zero and is_lora(pl_module.model):
            save_adapter(pl_module.model, self.out_dir.with_name(self.out_dir.name + "_adapter"))
        pl_module.model = merged_copy_if_lora(pl_module.model)
        if trainer.is_global_zero:
            save_model(pl_module.model, self.tokenizer, self.out_dir)
        distributed.barrier()  # no rank reads M(t) before it is on disk
        self.model = pl_module.model
        return self.model
