"""Where M0 comes from (conf/model/*.yaml): the embedded tiny model or any Hugging Face checkpoint."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from srlm_exp.data.seed_data import PretrainingCorpus


class TinyWorldModel:
    """Build (or reuse from cache) a tiny Llama pretrained on the seed data's corpus."""

    requires: ClassVar[tuple[type, ...]] = (PretrainingCorpus,)

    def m0(self, model_cfg, seed_data: PretrainingCorpus, cache_dir: str | Path, trainer_cfg, seed: int) -> str:
        from srlm_exp.models.tiny import build_m0

        return str(build_m0(model_cfg, seed_data, cache_dir, trainer_cfg, seed))


class PretrainedModel:
    """A Hugging Face checkpoint, local directory or hub name, used as M0 as it is."""

    requires: ClassVar[tuple[type, ...]] = ()

    def m0(self, model_cfg, seed_data, cache_dir, trainer_cfg, seed: int) -> str:
        return str(model_cfg.name_or_path)
