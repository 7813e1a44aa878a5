"""One place that builds a Lightning Trainer from the `trainer` config and runs a fit."""
from __future__ import annotations

from typing import Any, Sequence, cast

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from srlm_exp import distributed
from srlm_exp.training.sharding import fsdp_strategy


def make_trainer(
    trainer_cfg: DictConfig | dict,
    *,
    max_epochs: int,
    max_steps: int = -1,
    logger: Any = None,
    callbacks: Sequence[pl.Callback] = (),
    default_root_dir: str | None = None,
) -> pl.Trainer:
    """A Trainer for one training stage. Checkpointing is off: stages save model directories."""
    # to_container is typed as any container; a DictConfig's is a dict
    kwargs = (cast(dict, OmegaConf.to_container(trainer_cfg, resolve=True)) if isinstance(trainer_cfg, DictConfig)
              else dict(trainer_cfg))
    # The modules optimise by hand (micro-batches, training/base.py), where Lightning refuses its own clipping.
    clipping = ClipGradients(kwargs.pop("gradient_clip_val", None), kwargs.pop("gradient_clip_algorithm", None) or "norm")
    if kwargs.get("strategy") == "fsdp":  # FSDP2 over every rank `distributed.launch` started (see sharding.py)
        kwargs["strategy"] = fsdp_strategy(distributed.world_size())
    return pl.Trainer(
        max_epochs=max_epochs,
        max_steps=max_steps,
        logger=logger if logger is not None else False,
        callbacks=[*callbacks, clipping],  # last: other callbacks see the gradients unclipped, as in Lightning
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=default_root_dir,
        **kwargs,
    )


class ClipGradients(pl.Callback):
    """`trainer.gradient_clip_val` (and `_algorithm`), applied where Lightning's automatic optimisation applies
    them: after the backward passes and every `on_before_optimizer_step` hook, before the optimizer's step."""

    def __init__(self, value: float | None, algorithm: str = "norm"):
        self.value, self.algorithm = value, algorithm

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer) -> None:
        if self.value:
            pl_module.clip_gradients(optimizer, gradient_clip_val=self.value, gradient_clip_algorithm=self.algorithm)
