"""The end of every fit: the trained model becomes a plain model directory before anything uses it."""
from __future__ import annotations

import shutil
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
    structure (for the loop: M(t-1) loaded again, with its LoRA adapters).

    With `deferred`, the fit ends with the plain model in memory (and the LoRA adapter on disk), and its
    owner writes the model with `publish()` once what belongs with it is on disk: the loop's M(t) and its
    training record are one unit, since a resumed job takes M(t)'s directory for a finished stage."""

    def __init__(self, out_dir: Path, tokenizer, rebuild: Callable[[], nn.Module], deferred: bool = False):
        self.out_dir, self.tokenizer, self.rebuild, self.deferred = Path(out_dir), tokenizer, rebuild, deferred
        self._gathered: dict | None = None
        self.model: nn.Module | None = None  # the plain model, once finalized

    def on_train_end(self, trainer, pl_module) -> None:
        if is_sharded(pl_module.model):
            self._gathered = gather_full_state_dict(pl_module.model)
            for optimizer in trainer.optimizers:  # the shards' Adam state is dead weight from here on
                optimizer.state.clear()
            pl_module.model.zero_grad(set_to_none=True)

    def on_fit_end(self, trainer, pl_module) -> None:
        self.finalize(trainer, pl_module)

    def finalize(self, trainer, pl_module) -> nn.Module:
        """Save M(t) (on the first call, unless deferred) and return it as a plain model."""
        if self.model is not None:
            return self.model
        if self._gathered is not None:
            pl_module.model, self._gathered = unsharded_copy(self.rebuild, self._gathered), None
        # Every rank merges its own (identical) copy, so the generation phase that follows runs the
        # saved model on all ranks; rank 0 alone writes (the adapter too: small, relative to M(t-1)).
        if trainer.is_global_zero and is_lora(pl_module.model):
            adapter = self.out_dir.with_name(self.out_dir.name + "_adapter")
            if adapter.is_dir():  # an earlier attempt's, killed before its model was written: not this fit's
                shutil.rmtree(adapter)
            save_adapter(pl_module.model, adapter)
        pl_module.model = merged_copy_if_lora(pl_module.model)
        self.model = pl_module.model
        if not self.deferred:
            self._save(trainer.is_global_zero)
        return self.model

    def publish(self) -> None:
        """Write the deferred model (rank 0; every rank waits until it is on disk)."""
        if self.model is None:
            raise RuntimeError(f"{self.out_dir}: publish() before the fit ended; the model is written after its fit")
        self._save(distributed.is_main())

    def _save(self, main: bool) -> None:
        if main:
            save_model(self.model, self.tokenizer, self.out_dir)
        distributed.barrier()  # no rank reads M(t) before it is on disk
