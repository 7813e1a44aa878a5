"""Experiment tracking: one W&B run per job, offline by default, named for what a researcher compares.

W&B's conventions (its default view groups runs by `group`): `group` is the experiment variant, i.e. the
settings that change artifacts, so the seeds of one variant are one line with a band and two launches with
the same settings share it; the run's name is the variant and its seed; `job_type` is the training stage;
the config holds the resolved config, every Hydra choice (`choices.judge`, ...: group by any in one click)
and the variant. Per iteration it logs the summary entry against `iteration` and three tables that run
across iterations (eval answers, judged candidates, training pairs); summary.json and the resolved config
are the run's files."""
from __future__ import annotations

import json
import logging
import random
from argparse import Namespace
from pathlib import Path
from typing import Any, Mapping, cast

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger

from srlm_exp import layout
from srlm_exp.artifacts import read_jsonl
from srlm_exp.distributed import is_main

log = logging.getLogger(__name__)

# Groups picked by another group's name (model_defaults and model_debug follow model and debug): neither a tag
# nor part of a variant's name, which the groups they follow name already.
DERIVED_GROUPS = ("model_defaults", "model_debug")
MAX_TAG = 64  # W&B's limit on a tag's length
SAMPLE_ROWS = 200  # rows per table and iteration: a seeded sample when there are more
SAVED_FILES = (layout.SUMMARY, layout.RESOLVED_CONFIG)  # the job's record and settings, as the run's files


class ContinuousWandbLogger(WandbLogger):
    """Every Trainer restarts global_step at 0; offset it so each stage continues the run's axis. Each fit's
    module hyperparameters go under `hparams/<stage>/` (the module's `log_prefix`, the prefix of its metrics):
    written flat, the stages of one job would overwrite each other's `lr`, `beta`, ..."""

    step_offset = 0

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Lightning always passes `anonymous` (None here), which wandb now answers with a deprecation warning.
        self._wandb_init.pop("anonymous", None)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        super().log_metrics(metrics, None if step is None else step + self.step_offset)

    def log_hyperparams(self, params: dict[str, Any] | Namespace) -> None:
        params = dict(vars(params) if isinstance(params, Namespace) else params)
        stage = params.pop("log_prefix", None) or "stage"
        super().log_hyperparams({f"hparams/{stage}/{k}": v for k, v in params.items()})


class Tracker:
    """Logs run-level metrics and tables (against `iteration`) and hands Lightning its logger; a no-op when off."""

    def __init__(self, cfg: DictConfig, choices: dict[str, str], variant: str, out_dir: Path,
                 sweep_name: str | None = None):
        """`variant`: the experiment variant's name (main.variant_name), the W&B group."""
        self.lightning_logger: ContinuousWandbLogger | None = None
        self.tables: dict[str, Any] = {}  # key -> its incremental wandb.Table, one per kind across iterations
        self.step_metrics: set[str] = set()  # the prefixes already logged against `iteration`
        self.seed = int(cfg.seed)
        if not cfg.logger.enabled or not is_main():  # one W&B run per job, held by rank 0
            return
        tags = [f"{g}={o}" for g, o in sorted(choices.items()) if g not in DERIVED_GROUPS] + [f"seed={cfg.seed}"]
        tags += ([f"sweep={sweep_name}"] if sweep_name else []) + list(cfg.logger.tags)
        self.lightning_logger = ContinuousWandbLogger(
            project=cfg.logger.project,
            entity=cfg.logger.entity,
            group=cfg.logger.group or variant,
            job_type=choices.get("train", "run"),  # the stage that makes M(t>=2); never the grouping
            tags=[t[:MAX_TAG] for t in tags],
            name=f"{variant},seed={cfg.seed}",
            save_dir=str(out_dir),
            mode=cfg.logger.mode,
            config={**cast(dict, OmegaConf.to_container(cfg, resolve=True)), "choices": dict(choices), "variant": variant},
            reinit="create_new",
            settings=wandb_settings(),
        )
        run = self.lightning_logger.experiment
        run.define_metric("iteration")
        # The job's own record and settings, kept current while it runs (read where they are, in the job dir).
        for name in SAVED_FILES:
            if (out_dir / name).exists():
                run.save(str(out_dir / name), base_path=str(out_dir), policy="live")

    def advance(self, steps: int) -> None:
        if self.lightning_logger is not None:
            self.lightning_logger.step_offset += steps

    def _against_iteration(self, run, keys) -> None:
        """Every per-iteration metric (eval/*, aift/*, gen_verif/*, timings/*, ...) on the `iteration` axis of `run`
        (the W&B run), its prefix declared the first time it appears (Lightning's default puts every key on
        trainer/global_step)."""
        for key in keys:
            prefix = key.split("/", 1)[0]
            if prefix not in self.step_metrics and prefix != "iteration":
                self.step_metrics.add(prefix)
                run.define_metric(f"{prefix}/*" if "/" in key else prefix, step_metric="iteration")

    def log_iteration(self, iteration: int, metrics: dict[str, Any]) -> None:
        if self.lightning_logger is None:
            return
        flat = {k: v for k, v in _flatten(metrics).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        run = self.lightning_logger.experiment
        self._against_iteration(run, flat)
        run.log({"iteration": iteration, **flat})

    def log_samples(self, iteration: int, iteration_dir: Path) -> None:
        """Add iteration t's rows to three tables that run across iterations, each with an `iteration` column:
        M(t)'s answers to the held-out instructions (`samples/eval_responses`), and what M(t) was trained on,
        AIFT(M(t-1)): the candidates with their judgments and scores (`samples/candidates`) and the pairs
        (`samples/training_pairs`); at most SAMPLE_ROWS rows each per iteration, a seeded sample."""
        if self.lightning_logger is None:
            return
        import wandb

        rng = random.Random(f"samples:{self.seed}:{iteration}")
        logged = {}
        for key, (columns, rows) in {
            "samples/eval_responses": (EVAL_COLUMNS, _rows(iteration_dir / layout.EVAL_RESPONSES, EVAL_COLUMNS, rng)),
            "samples/candidates": (CANDIDATE_COLUMNS, _candidate_rows(iteration_dir / layout.CANDIDATES, rng)),
            "samples/training_pairs": (PAIR_COLUMNS, _rows(iteration_dir / layout.PAIRS, PAIR_COLUMNS, rng)),
        }.items():
            if not rows:
                continue
            if key not in self.tables:  # INCREMENTAL: each log adds only the rows added since the last one
                self.tables[key] = wandb.Table(columns=["iteration", *columns], log_mode="INCREMENTAL",
                                               allow_mixed_types=True)
            for row in rows:
                self.tables[key].add_data(iteration, *row)
            logged[key] = self.tables[key]
        if logged:
            run = self.lightning_logger.experiment
            self._against_iteration(run, logged)
            run.log({"iteration": iteration, **logged})

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


EVAL_COLUMNS = ["instruction", "response", "length", "finished", "gt_score", "correct"]
PAIR_COLUMNS = ["prompt_id", "instruction", "chosen", "chosen_score", "rejected", "rejected_score", "chosen_length",
                "rejected_length"]
CANDIDATE_COLUMNS = ["prompt_id", "instruction", "family", "candidate", "text", "source", "length", "finished",
                     "judgments", "judgment_scores", "score", "gt_score", "gt_correct"]


def _rows(path: Path, columns: list[str], rng: random.Random) -> list[list[Any]]:
    """The file's rows as table rows (a missing field is empty), at most SAMPLE_ROWS of them in file order."""
    if not path.exists():
        return []
    rows = read_jsonl(path)
    if len(rows) > SAMPLE_ROWS:
        rows = [rows[i] for i in sorted(rng.sample(range(len(rows)), SAMPLE_ROWS))]
    return [[r.get(c) for c in columns] for r in rows]


def _candidate_rows(path: Path, rng: random.Random) -> list[list[Any]]:
    """One row per candidate; whole prompts (a prompt's candidates are compared with each other), drawn at random
    until SAMPLE_ROWS candidates. A candidate's judgments are one text, its per-judgment scores a JSON list."""
    if not path.exists():
        return []
    prompts = read_jsonl(path)
    order = list(range(len(prompts)))
    rng.shuffle(order)
    kept: list[int] = []
    n = 0
    for i in order:
        if kept and n + len(prompts[i]["candidates"]) > SAMPLE_ROWS:
            break
        kept.append(i)
        n += len(prompts[i]["candidates"])
    out = []
    for p in (prompts[i] for i in sorted(kept)):
        for k, c in enumerate(p["candidates"]):
            out.append([p["prompt_id"], p["instruction"], p.get("family"), k, c["text"], c.get("source"),
                        c.get("length"), c.get("finished"), "\n\n---\n\n".join(c.get("judgments", [])),
                        json.dumps(c.get("judgment_scores", [])), c.get("score"), c.get("gt_score"),
                        c.get("gt_correct")])
    return out


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
