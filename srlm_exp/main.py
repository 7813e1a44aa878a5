"""The job wrapper: one Hydra job = one self-rewarding run, cleaned up whatever happens."""
from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from srlm_exp import distributed, layout
from srlm_exp.artifacts import atomic_path
from srlm_exp.config import build_components
from srlm_exp.inference.backend import use_generation
from srlm_exp.inference.vllm_engine import release_engine
from srlm_exp.loop import Loop
from srlm_exp.models.loading import release_cached_memory
from srlm_exp.models.shared_prefix import use_shared_prefix
from srlm_exp.progress import log_found, quiet_bars_off_terminal
from srlm_exp.resume import NEUTRAL, check_resume
from srlm_exp.summary import Summary
from srlm_exp.tracking import DERIVED_GROUPS, Tracker

log = logging.getLogger(__name__)


def quiet_third_party() -> None:
    """Silence what the libraries print because of how the project uses them, and a user cannot act on:
    Lightning's per-Trainer banners (accelerators, a litlogger tip, 'Seed set') — one Trainer per stage
    repeats them every iteration — and warnings about Lightning's own internals or our short DPO stages."""
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.seed",
                 "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval")


# Settings that never name a variant: those that change how a job is watched, not what it writes (resume.py's
# NEUTRAL: logger, paths, progress bars, resume_anyway), Hydra's own, and the groups another group's name picks.
NOT_VARIANT = (*NEUTRAL, "hydra", *DERIVED_GROUPS)
PRESET_GROUPS = ("experiment", "debug")  # what tells a run without overrides from another (a smoke run from a real one)
MAX_VARIANT = 128  # W&B's limit on a group's length


def _names_variant(key: str) -> bool:
    seed = key.split(".")[-1] == "seed"  # the seed, not data.split_seed (which changes the data)
    return not seed and not any(key == n or key.startswith(n + ".") for n in NOT_VARIANT)


def variant_name(choices: dict[str, str], overrides: list[str]) -> str:
    """The experiment variant as `key=value,...`: the command line's overrides that change artifacts, sorted (the
    seed, logging and Hydra's settings left out), so that every seed and every launch of the same settings gets
    the same name and different settings never do. Without such overrides, the presets chosen (experiment,
    debug) or `default`. Past W&B's 128 characters, the name ends in a hash of the whole."""
    parts: dict[str, str] = {}
    for override in overrides:
        key, eq, value = override.partition("=")
        key = key.lstrip("+")  # +key=v and ++key=v set what key=v sets
        if _names_variant(key.lstrip("~")):
            parts[key] = f"{key}={value}" if eq else key
    if not parts:
        parts = {g: f"{g}={choices[g]}" for g in PRESET_GROUPS if choices.get(g) not in (None, "none")}
    name = ",".join(part for _, part in sorted(parts.items())) or "default"
    if len(name) > MAX_VARIANT:
        name = name[: MAX_VARIANT - 9] + "~" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return name


def job_identity(cfg: DictConfig) -> tuple[Path, dict, list[str], str | None, str]:
    """Output dir, chosen config options, overrides, sweep name and variant, from Hydra when it runs us."""
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        choices = {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra") and "@" not in k and v is not None}
        sweep = Path(hc.sweep.dir).name if hc.mode == RunMode.MULTIRUN else None
        overrides = list(hc.overrides.task)
        return Path(hc.runtime.output_dir), choices, overrides, sweep, variant_name(choices, overrides)
    return Path(cfg.get("output_dir") or "outputs/manual"), {}, [], None, variant_name({}, [])


def run(cfg: DictConfig) -> dict:
    """Run one job; always finish the W&B run (failed jobs with a failing exit code) and free memory."""

    quiet_third_party()
    quiet_bars_off_terminal()
    use_shared_prefix(cfg.shared_prefix)
    use_generation(cfg.get("generation"))
    components = build_components(cfg)  # every config problem, before anything is built
    out_dir, choices, overrides, sweep, variant = job_identity(cfg)
    changed = check_resume(out_dir, cfg) if distributed.is_main() else []  # never mix two configs in one job
    # Multi-device trainers: start every rank now (they all run the loop; see distributed.py).
    distributed.launch(cfg.trainer, multirun=sweep is not None)
    distributed.clear_failure_note(out_dir)
    if distributed.is_main():
        out_dir.mkdir(parents=True, exist_ok=True)
        # Resolve once and store: ${hydra:...} interpolations do not resolve outside a running app.
        with atomic_path(out_dir / layout.RESOLVED_CONFIG) as tmp:  # a killed write never leaves half a config
            tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    # Typed settings the report tells variants apart by, keyed as their override (`data.eft=false` is one key).
    job = {"choices": choices, "overrides": overrides, "seed": int(cfg.seed), "data.eft": bool(cfg.data.get("eft", True)),
           "train.reference": cfg.train.get("reference"), "sweep": sweep,
           **({"resumed_with_changes": changed} if changed else {})}
    summary = Summary(out_dir / layout.SUMMARY, job)
    summary.save()
    log_found(out_dir, summary.data["iterations"], cfg.loop.iterations)  # a rerun: what it reads back
    tracker = Tracker(cfg, choices, variant, out_dir, sweep)
    failed = True
    try:
        Loop(cfg, out_dir, components, summary, tracker).run()
        failed = False
        summary.set_status("finished")
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        distributed.leave_failure_note(out_dir, error)
        summary.set_status("failed", error=error, rank_errors=distributed.failure_notes(out_dir))
        raise
    finally:
        tracker.finish(failed)
        release_engine()
        release_cached_memory()  # the next job of a multirun runs in this process
        distributed.teardown(failed)
    return summary.data
