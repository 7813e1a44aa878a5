"""The job wrapper: one Hydra job = one self-rewarding run, cleaned up whatever happens."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from srlm_exp import distributed
from srlm_exp.config import build_components
from srlm_exp.inference.backend import use_generation
from srlm_exp.inference.vllm_engine import release_engine
from srlm_exp.loop import Loop
from srlm_exp.models.loading import release_cached_memory
from srlm_exp.models.shared_prefix import use_shared_prefix
from srlm_exp.resume import check_resume
from srlm_exp.summary import Summary
from srlm_exp.tracking import Tracker

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


def job_identity(cfg: DictConfig) -> tuple[Path, dict, list[str], str | None]:
    """Output dir, chosen config options, overrides and sweep name, from Hydra when it runs us."""
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        choices = {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra") and "@" not in k and v is not None}
        sweep = Path(hc.sweep.dir).name if hc.mode == RunMode.MULTIRUN else None
        return Path(hc.runtime.output_dir), choices, list(hc.overrides.task), sweep
    return Path(cfg.get("output_dir") or "outputs/manual"), {}, [], None


def run(cfg: DictConfig) -> dict:
    """Run one job; always finish the W&B run (failed jobs with a failing exit code) and free memory."""

    quiet_third_party()
    use_shared_prefix(cfg.shared_prefix)
    use_generation(cfg.get("generation"))
    components = build_components(cfg)  # every config problem, before anything is built
    out_dir, choices, overrides, sweep = job_identity(cfg)
    changed = check_resume(out_dir, cfg) if distributed.is_main() else []  # never mix two configs in one job
    # Multi-device trainers: start every rank now (they all run the loop; see distributed.py).
    distributed.launch(cfg.trainer, multirun=sweep is not None)
    distributed.clear_failure_note(out_dir)
    if distributed.is_main():
        out_dir.mkdir(parents=True, exist_ok=True)
        # Resolve once and store: ${hydra:...} interpolations do not resolve outside a running app.
        (out_dir / "resolved_config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    # Typed settings the report tells variants apart by, keyed as their override (`data.eft=false` is one key).
    job = {"choices": choices, "overrides": overrides, "seed": int(cfg.seed), "data.eft": bool(cfg.data.get("eft", True)),
           "train.reference": cfg.train.get("reference"), "sweep": sweep,
           **({"resumed_with_changes": changed} if changed else {})}
    summary = Summary(out_dir / "summary.json", job)
    summary.save()
    tracker = Tracker(cfg, choices, out_dir, sweep)
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
