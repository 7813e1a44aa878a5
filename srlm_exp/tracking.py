"""Experiment tracking: one W&B run per job, identity derived from Hydra, offline by default."""
from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger

from srlm_exp.artifacts import read_jsonl
from srlm_exp.distributed import is_main

log = logging.getLogger(__name__)

# The groups whose chosen option names a variant (job type and tags come from these).
VARIANT_GROUPS = ("model", "data", "train", "judge", "pairs", "prompts")


class ContinuousWandbLogger(WandbLogger):
    """Every Trainer restarts global_step at 0; offset it so each stage continues the run's axis."""

    step_offset = 0

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Lightning always passes `anonymous` (None here), which wandb now answers with a deprecation warning.
        self._wandb_init.pop("anonymous", None)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        super().log_metrics(metrics, None if step is None else step + self.step_offset)


class Tracker:
    """Logs run-level metrics (against `iteration`) and hands Lightning its logger; a no-op when off."""

    def __init__(self, cfg: DictConfig, choices: dict[str, str], out_dir: Path, sweep_name: str | None):
        self.lightning_logger: ContinuousWandbLogger | None = None
        if not cfg.logger.enabled or not is_main():  # one W&B run per job, held by rank 0
            return
        job_type = choices.get("train", "run")
        tags = [f"{g}={choices[g]}" for g in VARIANT_GROUPS if g in choices] + [f"seed={cfg.seed}"] + list(cfg.logger.tags)
        self.lightning_logger = ContinuousWandbLogger(
            project=cfg.logger.project,
            entity=cfg.logger.entity,
            group=cfg.logger.group or sweep_name or "single",
            job_type=job_type,
            tags=tags,
            name=out_dir.name,
            save_dir=str(out_dir),
            mode=cfg.logger.mode,
            config=OmegaConf.to_container(cfg, resolve=True),
            reinit="create_new",
            settings=wandb_settings(),
        )
        run = self.lightning_logger.experiment
        run.define_metric("iteration")
        for prefix in ("eval/*", "judge/*", "pairs/*", "generated/*", "head_to_head/*", "external_judge/*", "reward_watch/*",
                       "training/*", "timings/*", "peak_gpu_memory_gb/*"):
            run.define_metric(prefix, step_metric="iteration")

    def advance(self, steps: int) -> None:
        if self.lightning_logger is not None:
            self.lightning_logger.step_offset += steps

    def log_iteration(self, iteration: int, metrics: dict[str, Any]) -> None:
        if self.lightning_logger is None:
            return
        flat = {k: v for k, v in _flatten(metrics).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.lightning_logger.experiment.log({"iteration": iteration, **flat})

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        if self.lightning_logger is None:
            return
        import wandb

        self.lightning_logger.experiment.log({key: wandb.Table(columns=columns, data=rows)})

    def log_pairs_sample(self, iteration: int, pairs_file: Path) -> None:
        """16 of the pairs M(t) was trained on, as a W&B table."""
        if self.lightning_logger is None or not pairs_file.exists():
            return
        rows = read_jsonl(pairs_file)
        sample = random.Random(iteration).sample(rows, min(16, len(rows)))
        columns = ["instruction", "chosen", "chosen_score", "rejected", "rejected_score"]
        self.log_table(f"samples/M{iteration}_training_pairs", columns, [[r[c] for c in columns] for r in sample])

    def finish(self, failed: bool) -> None:
        if self.lightning_logger is None:
            return
        import wandb

        # A crashed job must not show as finished; the next multirun job starts a fresh run.
        run = self.lightning_logger.experiment
        offline = run.settings.mode == "offline"
        run.finish(exit_code=1 if failed else 0)
        wandb.finish()
        if offline:
            log.info("W&B run saved offline; upload it with `wandb sync %s`", Path(run.dir).parent)
        self.lightning_logger = None


def wandb_settings():
    """Quiet: the run's own log says where the run is (no per-metric sparkline summary at exit)."""
    import wandb

    return wandb.Settings(quiet=True)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}/{k}" if prefix else k
        if isinstance(v, dict):
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out
