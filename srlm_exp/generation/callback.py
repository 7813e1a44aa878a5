"""The generation and judging phase as a Lightning callback: attached to the Trainer that trains M(t),
it makes AIFT(M(t)) when the fit ends. A thin adapter, built per fit with everything `make` needs;
a resumed job whose M(t) exists calls the same function directly."""
from __future__ import annotations

from typing import Any, Callable

import pytorch_lightning as pl

from srlm_exp.training.save_callback import SaveModelCallback


class SelfRewardCallback(pl.Callback):
    def __init__(self, make: Callable[[Any], dict], trained: SaveModelCallback):
        """`make(model)` makes the data with M(t); `trained` hands over M(t) as the saved plain model."""
        self.make, self.trained = make, trained
        self.stats: dict | None = None

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Every rank takes part. Lightning's teardown moved the model to the CPU before on_fit_end:
        # put it back on this rank's device to generate.
        model = self.trained.finalize(trainer, pl_module)
        self.stats = self.make(model.to(trainer.strategy.root_device))
