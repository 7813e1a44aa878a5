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
    if kwargs.get("strategy") == "fsdp":  # FSDP2 over every rank `distributed.launch` started (see sharding.py)
        kwargs["strategy"] = fsdp_strategy(distributed.world_size())
    return pl.Trainer(
        max_epochs=max_epochs,
        max_steps=max_steps,
        logger=logger if logger is not None else False,
        callbacks=list(callbacks),
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=default_root_dir,
        **kwargs,
    )
