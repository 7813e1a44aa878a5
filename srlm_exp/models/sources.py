"""Where M0 comes from (conf/model/*.yaml): the embedded tiny world model or any HF checkpoint."""
from __future__ import annotations

from pathlib import Path

from srlm_exp.models.tiny import build_m0


class TinyWorldModel:
    """Build (or reuse from cache) the tiny Llama pretrained on the world corpus."""

    def m0(self, model_cfg, seed_data, cache_dir: str | Path, trainer_cfg, seed: int) -> str:
        if not hasattr(seed_data, "files") or "corpus" not in seed_data.files:
            raise ValueError("model=tiny is pretrained on the world corpus and needs data=world; "
                             "use model=hf with model.name_or_path for other seed data")
        return str(build_m0(model_cfg, seed_data.files, cache_dir, trainer_cfg, seed))


class PretrainedModel:
    """A Hugging Face checkpoint, local directory or hub name, used as M0 as it is."""

    def m0(self, model_cfg, seed_data, cache_dir, trainer_cfg, seed: int) -> str:
        return str(model_cfg.name_or_path)
