"""Validate a composed config early, with messages that name the key and the fix."""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    pass


def validate(cfg: DictConfig) -> None:
    if cfg.loop.iterations < 0:
        raise ConfigError(f"loop.iterations={cfg.loop.iterations}: must be >= 0 (2 gives M2 and M3)")
    if cfg.model.name == "hf" and OmegaConf.is_missing(cfg.model, "name_or_path"):
        raise ConfigError("model=hf needs model.name_or_path=<local dir or hub name>")
    if cfg.model.name == "tiny" and cfg.data.name != "world":
        raise ConfigError("model=tiny is pretrained on the embedded world and needs data=world; "
                          "for other seed data use model=hf model.name_or_path=...")
    if cfg.judge.name == "oracle" and cfg.data.name != "world":
        raise ConfigError("judge=oracle is the world's ground-truth grader and needs data=world")
    n = cfg.callbacks.self_reward.n_candidates
    if n < 2:
        raise ConfigError(f"callbacks.self_reward.n_candidates={n}: pairs need at least 2 candidates per prompt")
    for key in ("prompts", "judge", "train", "data", "model"):
        for sub in cfg[key].keys():  # reading a value would raise omegaconf's own error first
            if OmegaConf.is_missing(cfg[key], sub):
                raise ConfigError(f"{key}.{sub} is required by the chosen {key} option: set {key}.{sub}=...")
