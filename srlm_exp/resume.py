"""A job directory belongs to one configuration: a rerun on it resumes only with the same settings.

A job stores the config that produced it (`resolved_config.yaml`). Rerunning on the same directory reads
finished phases back instead of redoing them, so a rerun with, say, `train=sft judge=holistic5` would
report the first run's DPO models and additive judgments under the new names. `changed_settings` finds
every setting that differs; the job refuses them all at once unless `resume_anyway=true`.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, cast

import yaml
from omegaconf import DictConfig, OmegaConf

from srlm_exp import layout
from srlm_exp.checks import ConfigError, Problem

log = logging.getLogger(__name__)

# Settings that change how a run is watched or how much memory it takes, not what it writes (and the switch
# itself). vLLM's KV cache size changes how many sequences run at once; each keeps its own seed, so a phase
# draws alike; micro-batches take the same optimizer steps (batch shapes can still round floats differently,
# as thread counts do).
NEUTRAL = ("logger", "paths", "resume_anyway", "trainer.enable_progress_bar", "trainer.log_every_n_steps",
           "generation.vllm.cpu_kv_cache_gib", "seed_sft.micro_batch_size", "train.micro_batch_size")


# What a prompt's judged candidates depend on. A job branched with `--with-candidates` (branch.py) holds another
# job's candidates of AIFT(M(t)), so a rerun may change how they are trained on (train, pairs, curriculum, the
# cut-off rule) but none of these, not even with resume_anyway: its pairs would claim settings that never made them.
CANDIDATE_SETTINGS = ("seed", "model", "data", "prompts", "judge", "callbacks.self_reward", "generation.backend")
TRAINING_ONLY = ("callbacks.self_reward.cut_off", "callbacks.self_reward.cut_off_penalty")


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == n or key.startswith(n + ".") for n in prefixes)


def _neutral(key: str) -> bool:
    return _under(key, NEUTRAL)


def _makes_candidates(key: str) -> bool:
    return _under(key, CANDIDATE_SETTINGS) and not _under(key, TRAINING_ONLY)


def changed_settings(before: dict[str, Any], now: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{dotted key: (value before, value now)} for every artifact-changing setting that differs."""
    a, b = _flatten(before), _flatten(now)
    missing = object()
    return {k: (a.get(k, "<absent>"), b.get(k, "<absent>")) for k in sorted(set(a) | set(b))
            if not _neutral(k) and a.get(k, missing) != b.get(k, missing)}


def check_resume(out_dir: Path, cfg: DictConfig) -> list[str]:
    """Refuse (ConfigError, every differing key) to resume `out_dir` with settings other than its own;
    with `resume_anyway=true` keep the old config as resolved_config.previous.yaml and return the keys."""
    stored = out_dir / layout.RESOLVED_CONFIG
    if not stored.exists():
        return []
    before = yaml.safe_load(stored.read_text()) or {}
    changed = changed_settings(before, cast(dict, OmegaConf.to_container(cfg, resolve=True)))
    if not changed:
        return []
    branched = out_dir / layout.BRANCHED_FROM
    shared = json.loads(branched.read_text()).get("candidates") if branched.exists() else None
    kept = {k: v for k, v in changed.items() if _makes_candidates(k)} if shared else {}
    if kept:
        raise ConfigError([Problem(k, f"was {old!r} when the candidates of {shared} in {out_dir} were sampled and judged "
                                      f"(copied by branch --with-candidates), is {new!r} now",
                                   f"keep {k} as it was, or branch without --with-candidates so that the rerun samples "
                                   "and judges its own") for k, (old, new) in kept.items()])
    if cfg.get("resume_anyway", False):
        log.warning("resuming %s with %d changed setting(s), as resume_anyway=true: %s", out_dir, len(changed),
                    ", ".join(changed))
        stored.replace(out_dir / "resolved_config.previous.yaml")
        return list(changed)
    fix = (f"run in a new directory (hydra.run.dir=...), or add resume_anyway=true to resume {out_dir} with the "
           "new settings (its finished phases are kept as they are)")
    raise ConfigError([Problem(k, f"was {old!r} in the job at {out_dir}, is {new!r} now", fix)
                       for k, (old, new) in changed.items()])
