"""Progress that a log file shows (nohup, SLURM: stdout and stderr go to a file, and Hydra's job log, run.log,
gets the same lines): every phase's start and end with its size and duration, training steps with an ETA,
what a resumed job found done, and no progress bars redrawn with carriage returns.

A bar redraws its line with `\\r`; in a file every redraw is a fragment, and Lightning's Rich bar prints only its
last frame there, so a long fit showed nothing for its whole length. The lines here go through the logging
module (timestamped, one per event) whether or not a terminal is attached: at 30 s apart they cost nothing
beside a bar, and the job's run.log keeps them either way.
"""
from __future__ import annotations

import json
import logging
import math
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytorch_lightning as pl
import transformers

from srlm_exp import layout
from srlm_exp.artifacts import read_jsonl
from srlm_exp.distributed import is_main
from srlm_exp.generation.aift import aift_done
from srlm_exp.models.loading import is_model_dir
from srlm_exp.phases import PROGRESS_EVERY_SECONDS, PhaseLog, duration

log = logging.getLogger(__name__)

EVERY_SECONDS = PROGRESS_EVERY_SECONDS  # a training progress line at least this often (and at the first step and the end)

# The models whose phases are open, innermost last: a fit's lines name the model it trains (M2), which the
# Trainer does not know. `_all_done`: the job started on a directory where nothing was left to run.
_labels: list[str] = []
_all_done = False


def quiet_bars_off_terminal() -> None:
    """No transformers / Hugging Face Hub bars (loading weights, writing shards: a dozen per smoke run) when
    stderr is not a terminal; the phases' lines say what happens instead. On a terminal they stay."""
    if not sys.stderr.isatty():
        transformers.utils.logging.disable_progress_bar()


def _say(msg: str, *args: Any) -> None:
    if is_main():  # every rank runs the loop; one tells it
        log.info(msg, *args)


def _count(path: Path) -> int | None:
    return len(read_jsonl(path)) if path.exists() else None


class LoggedPhases(PhaseLog):
    """M(t)'s PhaseLog that also logs each phase's start and its end with duration and size (read from what
    the phase wrote: prompts, judged candidates, pairs, what M(t) trained on, evaluated answers)."""

    def __init__(self, job_dir: Path, iteration: int):
        super().__init__()
        self.job_dir, self.iteration = Path(job_dir), iteration

    def _title(self, name: str) -> str:
        label = f"M{self.iteration}"
        return label if name.lower() == label.lower() else f"{label} {name}"

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        title, before = self._title(name), self.seconds.get(name, 0.0)
        start = time.time()
        _say("%s: started%s", title, self._what(name))
        _labels.append(f"M{self.iteration}")
        try:
            with super().phase(name):
                yield
        except BaseException:
            _say("%s: failed after %s", title, duration(time.time() - start))
            raise
        finally:
            _labels.pop()
        total = time.time() - start
        own = self.seconds.get(name, 0.0) - before  # PhaseLog's figure: nested phases excluded
        nested = f" ({duration(own)} without the phases nested in it)" if total - own >= 0.1 else ""
        size = self._size(name)
        _say("%s: done in %s%s%s", title, duration(total), nested, f": {size}" if size else "")

    def _what(self, name: str) -> str:
        t = self.iteration
        if name == "train":
            return f" (M{t - 1} -> M{t})"
        if name in ("prompts", "candidates_and_judging", "meta_judging"):
            n = _count(layout.iteration_dir(self.job_dir, t + 1) / layout.PROMPTS) if name != "prompts" else None
            return f" (AIFT(M{t}) into iteration_{t + 1}{f', {n} prompts' if n is not None else ''})"
        return ""

    def _size(self, name: str) -> str:
        """What the phase made, from its files; empty where it wrote none (M0, or a rank that writes nothing)."""
        here = layout.iteration_dir(self.job_dir, self.iteration)
        nxt = layout.iteration_dir(self.job_dir, self.iteration + 1)  # AIFT(M(t)) is M(t+1)'s data
        if name == "train" and (here / layout.TRAINING).exists():
            trained = json.loads((here / layout.TRAINING).read_text())
            return "trained on " + ", ".join(f"{v} {k}" for k, v in trained.items())
        if name == "prompts" and (n := _count(nxt / layout.PROMPTS)) is not None:
            return f"{n} prompts"
        if name == "candidates_and_judging" and (nxt / layout.CANDIDATES).exists():
            rows = read_jsonl(nxt / layout.CANDIDATES)
            return f"{len(rows)} prompts, {sum(len(r['candidates']) for r in rows)} candidates judged"
        if name == "meta_judging" and (n := _count(nxt / layout.JUDGE_PAIRS)) is not None:
            return f"{n} judge pairs"
        if name == "eval" and (n := _count(here / layout.EVAL_RESPONSES)) is not None:
            return f"{n} held-out instructions answered and judged"
        return ""


class TrainingProgress(pl.Callback):
    """A fit's progress as log lines: what it trains on and for how many steps, then step k/n with the loss,
    seconds per step and an ETA at the first step and at least every EVERY_SECONDS, and the end."""

    def __init__(self, every_seconds: float = EVERY_SECONDS):
        self.every = every_seconds
        self.name, self.total, self.start, self.last, self.step = "", math.inf, 0.0, 0.0, 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        prefix = pl_module.hparams.get("log_prefix", type(pl_module).__name__)
        self.name = f"{_labels[-1]} {prefix}" if _labels else prefix
        self.total = trainer.estimated_stepping_batches
        self.start = self.last = time.time()
        self.step = 0
        try:
            loader = trainer.train_dataloader
            rows = len(loader.dataset) if loader is not None else None
        except (AttributeError, TypeError):
            rows = None
        unit = "pairs" if prefix == "dpo" else "examples"  # DPO's rows are pairs (and Meta-Rewarding's judge pairs)
        epochs = trainer.max_epochs
        _say("%s: training on %s, %s steps (%s epoch%s of %s batches)", self.name,
             f"{rows} {unit}" if rows is not None else "an unsized dataset", self._of_total(),
             epochs, "" if epochs == 1 else "s", trainer.num_training_batches)

    def _of_total(self) -> str:
        return str(int(self.total)) if math.isfinite(self.total) else "?"

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not trainer.is_global_zero or trainer.global_step == self.step:  # no optimizer step (accumulation)
            return
        self.step, now = trainer.global_step, time.time()
        if self.step != 1 and (now - self.last < self.every or self.step >= self.total):
            return  # the last step is the end's line
        self.last = now
        per_step = (now - self.start) / self.step
        eta = f", ETA {duration(per_step * (self.total - self.step))}" if math.isfinite(self.total) else ""
        _say("%s: step %d/%s%s, %s/step%s", self.name, self.step, self._of_total(), _loss(outputs), duration(per_step),
             eta)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        took = time.time() - self.start
        per_step = f" ({duration(took / trainer.global_step)}/step)" if trainer.global_step else ""
        loss = trainer.callback_metrics.get(f"{pl_module.hparams.get('log_prefix')}/loss")
        _say("%s: %d steps in %s%s%s", self.name, trainer.global_step, duration(took), per_step,
             f", last loss {float(loss):.4g}" if loss is not None else "")


def _loss(outputs: Any) -> str:
    loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
    if loss is None:
        return ""
    try:
        return f", loss {float(loss):.4g}"
    except (TypeError, ValueError, RuntimeError):
        return ""


def _models(ts: list[int], fmt: str = "M{}") -> str:
    """[1, 2, 3, 5] -> 'M1-M3, M5'."""
    runs: list[list[int]] = []
    for t in ts:
        if runs and t == runs[-1][-1] + 1:
            runs[-1].append(t)
        else:
            runs.append([t])
    return ", ".join(fmt.format(r[0]) if len(r) == 1 else f"{fmt.format(r[0])}-{fmt.format(r[-1])}" for r in runs)


def log_found(job_dir: Path, entries: list[dict[str, Any]], iterations: int) -> None:
    """On a job directory that holds earlier work: what is done (read back, not redone) and what is left."""
    global _all_done
    _all_done = False  # a multirun's jobs share this process
    last = iterations + 1
    dirs = [layout.iteration_dir(job_dir, t) for t in range(last + 2)]
    evaluated = sorted(e["iteration"] for e in entries if "judge" in e and e["iteration"] <= last)
    trained = [t for t in range(1, last + 1) if is_model_dir(dirs[t] / layout.MODEL)]
    made = [t for t in range(1, last) if aift_done(dirs[t + 1])]
    if not (evaluated or trained or made):
        return
    found = [f"{_models(trained)} trained" if trained else "", f"{_models(made, 'AIFT(M{})')} made" if made else "",
             f"{_models(evaluated)} evaluated" if evaluated else ""]
    left = [f"train {_models(todo)}" if (todo := [t for t in range(1, last + 1) if t not in trained]) else "",
            f"make {_models(todo, 'AIFT(M{})')}" if (todo := [t for t in range(1, last) if t not in made]) else "",
            f"evaluate {_models(todo)}" if (todo := [t for t in range(last + 1) if t not in evaluated]) else ""]
    _all_done = not any(left)
    _say("resuming %s: found %s; %s", job_dir, ", ".join(f for f in found if f),
         "left: " + ", ".join(x for x in left if x) if any(left) else "nothing left to run")


def job_finished(start: float) -> None:
    """The job's last line: its duration, and on a rerun of a finished job that it found everything done."""
    _say("job finished in %s%s", duration(time.time() - start),
         ": everything was done already, read back (M0 loaded), nothing rerun" if _all_done else "")
