"""Find and load the ``summary.json`` files that runs and sweeps leave behind, and
label each job with its variant (the config values that differ between jobs).

Seeds never define a variant: jobs that differ only in seed are repeats, and the
tables aggregate over them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUMMARY_NAME = "summary.json"
# Per-job identifiers that differ between every job of a sweep without being a
# setting; treating them as config would make every job its own variant.
_JOB_IDENTIFIERS = {"num", "id", "name", "override_dirname", "dir", "output_dir", "run_dir",
                    "host", "hostname", "date", "time", "timestamp", "start_time", "end_time",
                    # how a job was resumed, not what it is: a job resumed with resume_anyway=true is the
                    # same variant as one run straight through
                    "resume_anyway"}
_MISSING = object()  # a key this job does not have (shown as "default" in labels)
# Job scalars that summaries written before stop 33 named otherwise: read under their override key, so that
# the typed value and the override (`data.eft=false`) are one setting, not two variant keys.
_LEGACY_KEYS = {"data_eft": "data.eft", "reference": "train.reference"}


@dataclass
class Job:
    """One loaded ``summary.json``."""

    path: Path                       # the summary.json itself
    rel: str                         # its directory relative to the scanned root, for messages
    config: dict[str, Any]           # candidate variant keys -> value (seed excluded)
    seed: Any
    status: str
    iterations: list[dict] = field(default_factory=list)
    variant: str = "all"


def _natural_key(p: Path) -> list:
    # multirun job dirs are "0_...", "1_...", "10_...": sort 10 after 9, not after 1.
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]


def find_summaries(root: str | Path) -> list[Path]:
    """All ``summary.json`` files under `root` (recursive), in natural path order."""
    return sorted((p for p in Path(root).rglob(SUMMARY_NAME) if p.is_file()), key=_natural_key)


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _is_seed(key: str) -> bool:
    return key.lstrip("+~").split(".")[-1] == "seed"


def _config_and_seed(job: dict) -> tuple[dict[str, Any], Any]:
    """Variant candidates of a ``job`` block: config-group choices, other scalars, then
    overrides (which catch sweeps over plain values like ``train.beta=0.5``)."""
    cfg: dict[str, Any] = {}
    choices = job.get("choices")
    if isinstance(choices, dict):
        cfg.update({str(k): v for k, v in choices.items() if _is_scalar(v)})
    for k, v in job.items():
        if k not in ("choices", "overrides") and k not in _JOB_IDENTIFIERS and not _is_seed(k) and _is_scalar(v):
            cfg.setdefault(_LEGACY_KEYS.get(str(k), str(k)), v)
    seed = job.get("seed")
    overrides = job.get("overrides")
    for ov in overrides if isinstance(overrides, list) else []:
        if not isinstance(ov, str) or "=" not in ov:
            continue
        key, val = ov.split("=", 1)
        key = key.lstrip("+~")
        if key in _JOB_IDENTIFIERS:
            continue
        if _is_seed(key):
            seed = val if seed is None else seed
        else:
            cfg.setdefault(key, val)  # the choice / scalar, when present, is the typed value
    return cfg, seed


def _iteration_records(raw: Any) -> list[dict]:
    """Keep dict entries only, each with an int ``iteration`` and a ``model`` name."""
    out: dict[int, dict] = {}
    for pos, it in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(it, dict):
            continue
        i = it.get("iteration")
        if not isinstance(i, int) or isinstance(i, bool):
            m = re.fullmatch(r"M(\d+)", str(it.get("model", "")))
            i = int(m.group(1)) if m else pos
        model = it.get("model") if isinstance(it.get("model"), str) and it.get("model") else f"M{i}"
        out[i] = {**it, "iteration": i, "model": model}  # a re-logged iteration: the last one wins
    return [out[i] for i in sorted(out)]


def load_job(path: Path, root: Path) -> Job:
    """Load one summary; raises ``ValueError`` (or ``OSError``) when it is unusable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON ({e})") from e
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    job = data.get("job") if isinstance(data.get("job"), dict) else {}
    cfg, seed = _config_and_seed(job)
    status = data.get("status") if isinstance(data.get("status"), str) else "unknown"
    try:
        rel = str(Path(path).parent.relative_to(root)) or "."
    except ValueError:
        rel = str(Path(path).parent)
    return Job(Path(path), rel, cfg, seed, status, _iteration_records(data.get("iterations")))


def load_jobs(paths: list[Path], root: str | Path) -> tuple[list[Job], list[str]]:
    """Load every path; return the usable jobs and one message per skipped file."""
    jobs, problems = [], []
    for p in paths:
        try:
            jobs.append(load_job(p, Path(root)))
        except (OSError, ValueError) as e:
            problems.append(f"{p}: {e}")
    return jobs, problems


def format_value(v: Any) -> str:
    """Config value as it reads in a Hydra override (``true``, ``null``, ``0.5``)."""
    if v is _MISSING:
        return "default"
    if isinstance(v, bool):
        return "true" if v else "false"
    return "null" if v is None else str(v)


def variant_keys(jobs: list[Job]) -> list[str]:
    """Config keys whose value differs between jobs (a key a job lacks counts as a value)."""
    keys: list[str] = []
    for j in jobs:
        keys += [k for k in j.config if k not in keys]
    # Compare the rendered values: a choice "dpo" and an override "dpo" are the same setting.
    return [k for k in keys if len({format_value(j.config.get(k, _MISSING)) for j in jobs}) > 1]


def assign_variants(jobs: list[Job]) -> list[str]:
    """Set ``job.variant`` (e.g. ``judge=additive5,train=dpo``, or ``all`` when nothing
    differs); return the variant labels in first-seen order."""
    keys = variant_keys(jobs)
    labels: list[str] = []
    for j in jobs:
        j.variant = ",".join(f"{k}={format_value(j.config.get(k, _MISSING))}" for k in keys) or "all"
        if j.variant not in labels:
            labels.append(j.variant)
    return labels
