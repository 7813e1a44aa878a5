"""Which engine generates: the job's `generation` settings (conf/config.yaml), set once per job like
`shared_prefix`, and read by inference/sampler.py:sample on every call."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from srlm_exp.checks import AUTO, Problem, at_least, require
from srlm_exp.inference.vllm_engine import AUTO_KV_CACHE_MAX_GIB, VLLMSettings, installed_problem

BACKENDS = ("hf", "vllm")


@dataclass(frozen=True)
class GenerationSettings:
    backend: str = "hf"
    vllm: VLLMSettings = field(default_factory=VLLMSettings)


class _Current:
    settings = GenerationSettings()


def _settings_from(node: DictConfig | dict | None) -> GenerationSettings:
    raw: dict[str, Any] = {} if node is None else (cast(dict, OmegaConf.to_container(node, resolve=True))
                                                    if isinstance(node, DictConfig) else dict(node))
    return GenerationSettings(backend=raw.get("backend", "hf"), vllm=VLLMSettings(**raw.get("vllm", {})))


def use_generation(node: DictConfig | dict | None) -> None:
    """Make `node` (a config's `generation`) the settings every later generation uses."""
    _Current.settings = _settings_from(node)


def generation_settings() -> GenerationSettings:
    return _Current.settings


def generation_problems(cfg: DictConfig) -> list[Problem | None]:
    """Problems with `generation.*`; for the vLLM backend, also whether it is installed and can run here."""
    node = cfg.get("generation")
    if node is None:
        return []
    backend = node.get("backend", "hf")
    out: list[Problem | None] = [require(backend in BACKENDS, "generation.backend", f"is {backend!r}",
                                         f"use one of {', '.join(BACKENDS)}")]
    known = {f.name for f in fields(VLLMSettings)}
    vllm = node.get("vllm") or {}
    out += [Problem(f"generation.vllm.{k}", "is not a vLLM setting", f"use one of {', '.join(sorted(known))}")
            for k in vllm if k not in known]
    if backend != "vllm":
        return out
    kv = vllm.get("cpu_kv_cache_gib", AUTO)
    sized = kv == AUTO or (isinstance(kv, (int, float)) and not isinstance(kv, bool) and math.isfinite(kv) and kv > 0)
    out += [require(sized, "generation.vllm.cpu_kv_cache_gib",
                    f"is {kv!r}, must be auto (sized to each generation, at most {AUTO_KV_CACHE_MAX_GIB} GiB) or a "
                    "size in GiB > 0", "set generation.vllm.cpu_kv_cache_gib=auto, or a fixed size such as 2"),
            require(0 < vllm.get("gpu_memory_utilization", 0.5) <= 1, "generation.vllm.gpu_memory_utilization",
                    f"is {vllm.get('gpu_memory_utilization')}, must be in (0, 1]", "set it to 0.85"),
            None if vllm.get("max_model_len") is None else at_least(vllm.get("max_model_len"), 1,
                                                                    "generation.vllm.max_model_len")]
    devices = cfg.get("trainer", {}).get("devices", 1)
    out.append(require(devices == 1, "generation.backend",
                       f"is vllm with trainer.devices={devices}: the engine runs in one process, not in every rank",
                       "set generation.backend=hf for multi-device runs, or trainer.devices=1"))
    problem = installed_problem()
    out.append(None if problem is None else Problem("generation.backend", f"is vllm, but {problem[0]}", problem[1]))
    return out
