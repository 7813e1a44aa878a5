"""Find and load the ``summary.json`` files that runs and sweeps leave behind, and
label each job with its variant (the config values that differ between jobs).

Seeds never define a variant: jobs that differ only in seed are repeats, and the
tables aggregate over them, however they were launched (one multirun, several, single runs).
Settings that change no artifact (logging, progress bars, Hydra's own, the sweep's name) never
define one either; `--by KEY...` names the variant keys explicitly.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from srlm_exp import layout
from srlm_exp.layout import EVAL_RESPONSES, iteration_dir
from srlm_exp.resume import NEUTRAL

# Per-job identifiers that differ between every job of a sweep without being a
# setting; treating them as config would make every job its own variant.
_JOB_IDENTIFIERS = {"num", "id", "name", "override_dirname", "dir", "output_dir", "run_dir",
                    "host", "hostname", "date", "time", "timestamp", "start_time", "end_time",
                    # how a job was resumed, not what it is: a job resumed with resume_anyway=true is the
                    # same variant as one run straight through
                    "resume_anyway",
                    # the multirun's directory name (a timestamp by default): seeds of one variant launched
                    # in two sweeps, or one of them alone, are still one variant
                    "sweep"}
# Settings that change how a job is watched, never what it writes: those a resume ignores too (logger,
# progress bars, ...), Hydra's own (hydra.*), and the config groups picked from others' names
# (model_defaults and model_debug follow model and debug, so they would only repeat them in labels).
NEUTRAL_KEYS = (*NEUTRAL, "hydra", "model_defaults", "model_debug")
_MISSING = object()  # a key this job does not have (shown as "default" in labels)
_INT = re.compile(r"[+-]?\d+")
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
    resolved: dict[str, Any] = field(default_factory=dict)  # the job's resolved_config.yaml, {} when absent

    @property
    def dir(self) -> Path:
        return self.path.parent

    def eval_responses(self, iteration: int) -> Path:
        """Where M(iteration)'s greedy answers to the held-out prompts are (eval_responses.jsonl)."""
        return iteration_dir(self.dir, iteration) / EVAL_RESPONSES

    def setting(self, key: str) -> Any:
        """The value of `key` for this job: from its summary, else from its resolved config (so a job that
        left a setting at its default matches one that set the same value on the command line)."""
        if key in self.config:
            return self.config[key]
        node: Any = self.resolved
        for part in key.lstrip("+~").split("."):
            if not isinstance(node, dict) or part not in node:
                return _MISSING
            node = node[part]
        return node if _is_scalar(node) else _MISSING


class VariantKeyError(ValueError):
    """A --by key that cannot define a variant (unknown, the seed, or a setting that changes no artifact)."""


def _natural_key(p: Path) -> list:
    # multirun job dirs are "0_...", "1_...", "10_...": sort 10 after 9, not after 1.
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]


def find_summaries(root: str | Path) -> list[Path]:
    """All ``summary.json`` files under `root` (recursive), in natural path order."""
    return sorted((p for p in Path(root).rglob(layout.SUMMARY) if p.is_file()), key=_natural_key)


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _is_seed(key: str) -> bool:
    return key.lstrip("+~").split(".")[-1] == "seed"


def is_neutral(key: str) -> bool:
    """A setting that changes no artifact (logging, Hydra's own, ...): never a variant key."""
    key = key.lstrip("+~")
    return any(key == n or key.startswith(n + ".") for n in NEUTRAL_KEYS)


def _config_and_seed(job: dict) -> tuple[dict[str, Any], Any]:
    """Variant candidates of a ``job`` block: config-group choices, other scalars, then
    overrides (which catch sweeps over plain values like ``train.beta=0.5``)."""
    cfg: dict[str, Any] = {}
    choices = job.get("choices")
    if isinstance(choices, dict):
        cfg.update({str(k): v for k, v in choices.items() if _is_scalar(v) and not is_neutral(str(k))})
    for k, v in job.items():
        if (k not in ("choices", "overrides") and k not in _JOB_IDENTIFIERS and not _is_seed(k) and _is_scalar(v)
                and not is_neutral(str(k))):
            cfg.setdefault(_LEGACY_KEYS.get(str(k), str(k)), v)
    seed = job.get("seed")
    overrides = job.get("overrides")
    for ov in overrides if isinstance(overrides, list) else []:
        if not isinstance(ov, str) or "=" not in ov:
            continue
        key, val = ov.split("=", 1)
        key = key.lstrip("+~")
        if key in _JOB_IDENTIFIERS or is_neutral(key):
            continue
        if _is_seed(key):
            seed = val if seed is None else seed
        else:
            cfg.setdefault(key, val)  # the choice / scalar, when present, is the typed value
    return cfg, seed


def _undefined_to_none(it: dict) -> dict:
    """The judge's rank correlations are written as 0 when it is constant, including when none of its
    judgments parsed (M0 before it learns the format); then nothing was ranked and they are undefined."""
    judge = it.get("judge")
    rate = judge.get("parse_rate") if isinstance(judge, dict) else None
    if isinstance(judge, dict) and isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate == 0:
        return {**it, "judge": {**judge, "spearman": None, "kendall": None}}
    return it


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
        out[i] = _undefined_to_none({**it, "iteration": i, "model": model})  # a re-logged iteration: the last one wins
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
    job = j if isinstance(j := data.get("job"), dict) else {}
    cfg, seed = _config_and_seed(job)
    status = st if isinstance(st := data.get("status"), str) else "unknown"
    try:
        rel = str(Path(path).parent.relative_to(root)) or "."
    except ValueError:
        rel = str(Path(path).parent)
    return Job(Path(path), rel, cfg, seed, status, _iteration_records(data.get("iterations")),
               resolved=_resolved_config(Path(path).parent / layout.RESOLVED_CONFIG))


def _resolved_config(path: Path) -> dict[str, Any]:
    """The job's resolved config, or {} where it is absent or unreadable: it only fills in the value of a
    setting some other job overrode, so without it the setting reads "default", as before."""
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


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
    if isinstance(v, str) and not _INT.fullmatch(v.strip()):
        try:  # an override's "1e-5" is the resolved config's 1e-05: one value, one rendering
            return str(float(v))
        except ValueError:
            pass
    return "null" if v is None else str(v)


def variant_keys(jobs: list[Job]) -> list[str]:
    """Config keys whose value differs between jobs (a key a job lacks counts as a value)."""
    keys: list[str] = []
    for j in jobs:
        keys += [k for k in j.config if k not in keys]
    # Compare the rendered values: a choice "dpo" and an override "dpo" are the same setting.
    return [k for k in keys if len({format_value(j.setting(k)) for j in jobs}) > 1]


def check_variant_keys(jobs: list[Job], by: list[str]) -> list[str]:
    """The --by keys, normalised (``a,b`` splits; legacy names read as their override key); raises
    VariantKeyError naming every key that cannot define a variant, with the keys that can."""
    keys: list[str] = []
    for k in (part.strip().lstrip("+~") for item in by for part in item.split(",")):
        k = _LEGACY_KEYS.get(k, k)
        if k and k not in keys:
            keys.append(k)
    bad = []
    for k in keys:
        if _is_seed(k):
            bad.append(f"{k}: the seed is what a variant pools over, never a variant key")
        elif is_neutral(k) or k in _JOB_IDENTIFIERS:
            bad.append(f"{k}: changes no artifact (logging, launch or Hydra setting), so it cannot tell variants apart")
        elif all(j.setting(k) is _MISSING for j in jobs):
            bad.append(f"{k}: no job has this setting (neither in its summary.json nor its {layout.RESOLVED_CONFIG})")
    if bad:
        varying = variant_keys(jobs)
        others = sorted({k for j in jobs for k in j.config} - set(varying))
        raise VariantKeyError("--by: " + "; ".join(bad) + f". Settings that differ between these jobs: "
                              f"{', '.join(varying) or 'none'}; others they record: {', '.join(others) or 'none'} "
                              "(or any dotted key of resolved_config.yaml, e.g. train.beta)")
    if not keys:
        raise VariantKeyError("--by needs at least one key, e.g. --by judge train")
    return keys


def assign_variants(jobs: list[Job], by: list[str] | None = None) -> list[str]:
    """Set ``job.variant`` (e.g. ``judge=additive5,train=dpo``, or ``all`` when nothing
    differs); return the variant labels in first-seen order. `by` names the keys (every one
    is in the label, checked by check_variant_keys); by default, those whose value differs."""
    keys = check_variant_keys(jobs, by) if by else variant_keys(jobs)
    labels: list[str] = []
    for j in jobs:
        j.variant = ",".join(f"{k}={format_value(j.setting(k))}" for k in keys) or "all"
        if j.variant not in labels:
            labels.append(j.variant)
    return labels


def variant_settings(label: str) -> list[tuple[str, str]]:
    """``judge=additive5,train=dpo`` -> [("judge", "additive5"), ("train", "dpo")]; [] for ``all``.
    A value holding "," or "=" stays with its key: a new pair starts only where ``,key=`` does."""
    if label == "all":
        return []
    parts = re.split(r",(?=[^,=]+=)", label)
    return [tuple(p.split("=", 1)) if "=" in p else (p, "") for p in parts]


def short_names(labels: list[str]) -> tuple[str, dict[str, str]]:
    """Legend title and entries: the variant keys once (``judge · train``), each variant by its values
    (``additive5 · dpo``), instead of the raw ``judge=additive5,train=dpo``."""
    settings = {v: variant_settings(v) for v in labels}
    keys = [k for k, _ in next(iter(settings.values()), [])]
    if not keys or any([k for k, _ in s] != keys for s in settings.values()):
        return "", {v: v for v in labels}
    return " · ".join(keys), {v: " · ".join(val for _, val in s) for v, s in settings.items()}
