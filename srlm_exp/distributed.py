"""Ranks for the whole loop, not just the fits.

Under a multi-process strategy (trainer=ddp or trainer=fsdp) every process runs the
loop from the start, so generation, judging and evaluation can be split across ranks. The processes are
started once, at the beginning of the job, with Lightning's own launcher (Fabric.launch); every
later Trainer finds them running and the process group up, and starts no new ones.

Rules the loop follows:
  * rank 0 alone writes files, summary.json and W&B; a barrier follows each write phase, so all
    ranks see the same files when they decide what to skip on a resumed job;
  * decisions that depend on files are made by rank 0 and shared (`share_from_main`), never
    taken separately by each rank (a late rank could see a file an early one just wrote);
  * work is split by `split_map` (rank r takes items r, r+W, ...; results gathered in order).
Every helper is a no-op or a plain call when there is one process.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar, cast

import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

# Strategies whose launcher forks/spawns only the fit function: the loop around it would run once.
_SPAWNING = ("spawn", "fork", "notebook")


class DistributedConfigError(ValueError):
    pass


def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if _initialized() else 1


def rank() -> int:
    return dist.get_rank() if _initialized() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def launch(trainer_cfg: DictConfig | dict, multirun: bool = False) -> int:
    """Start (or join) all processes of a multi-process trainer config; returns the world size.

    Lightning's subprocess launcher re-runs the command line once per extra device with
    LOCAL_RANK set; under Hydra it adds `hydra.run.dir=<this job's dir>` and
    `hydra.output_subdir=null`, so the children work in this job's output dir and create no
    folders of their own. A child reaches this call too and only joins the process group.
    """
    # to_container is typed as any container; a DictConfig's is a dict
    c = (cast(dict, OmegaConf.to_container(trainer_cfg, resolve=True)) if isinstance(trainer_cfg, DictConfig)
         else dict(trainer_cfg))
    strategy = c.get("strategy", "auto")
    if not isinstance(strategy, str) or (strategy == "auto" and c.get("devices", 1) in (1, "1")):
        return 1
    if any(s in strategy for s in _SPAWNING):
        raise DistributedConfigError(
            f"trainer.strategy={strategy}: spawn/fork strategies re-run only the fit in new processes, but the "
            "self-rewarding loop needs every rank for generation and evaluation too; use trainer=ddp"
        )
    if strategy.startswith("fsdp") and strategy != "fsdp":
        raise DistributedConfigError(
            f"trainer.strategy={strategy}: the loop's FSDP is trainer=fsdp (strategy 'fsdp': FSDP2, every decoder "
            "layer sharded over all ranks, see srlm_exp/training/sharding.py); Lightning's other FSDP variants are "
            "not wired in; use trainer=fsdp, and for memory model.gradient_checkpointing=true or model.lora.enabled=true"
        )
    if _initialized():  # already launched (e.g. a second job in the same process)
        return world_size()
    from lightning_fabric import Fabric
    from lightning_fabric.strategies import ParallelStrategy

    # Fabric only starts the processes and the process group here; under trainer=fsdp each fit's
    # Trainer shards the model itself (training/sharding.py), so the processes start as for DDP.
    fabric = Fabric(accelerator=c.get("accelerator", "auto"), devices=c.get("devices", 1),
                    num_nodes=c.get("num_nodes", 1), strategy="ddp" if strategy == "fsdp" else strategy)
    if fabric.world_size == 1:
        return 1
    env = fabric.strategy.cluster_environment if isinstance(fabric.strategy, ParallelStrategy) else None
    assert env is not None, "more than one process: Fabric's strategy is a parallel one, with its cluster environment"
    if multirun and not env.creates_processes_externally:
        raise DistributedConfigError(
            f"trainer.strategy={strategy} with {fabric.world_size} devices in a local multirun: Lightning would "
            "re-run the whole sweep's command line in every child process. Run multi-device jobs one at a time, "
            "or sweep with hydra/launcher=slurm and hydra.launcher.tasks_per_node=<devices> (SLURM starts the ranks)"
        )
    fabric.launch()
    log.info("rank %d of %d started (%s)", rank(), world_size(), os.environ.get("LOCAL_RANK", "?"))
    return world_size()


def teardown(failed: bool = False) -> None:
    """Drop the process group at the end of a job, after every rank got there. A failed rank
    does not wait: it leaves, and the others' next collective fails instead of hanging."""
    if _initialized():
        try:
            if not failed:
                dist.barrier()
        finally:
            dist.destroy_process_group()


def _failure_note(out_dir: str | Path, r: int) -> Path:
    return Path(out_dir) / f"rank_{r}_error.txt"


def leave_failure_note(out_dir: str | Path, error: str) -> None:
    """A failing rank other than 0 writes its error into the job dir. Rank 0 usually fails next, in a
    collective whose own error ("connection closed") hides the cause, or is killed by Lightning's
    launcher, which ends every rank a few seconds after one fails."""
    if world_size() > 1 and not is_main():
        note = _failure_note(out_dir, rank())
        try:
            note.parent.mkdir(parents=True, exist_ok=True)
            note.write_text(error + "\n")
        except OSError as exc:  # the job's own error is re-raised by the caller; this must not replace it
            log.warning("could not write %s (%s); rank %d failed with: %s", note, exc, rank(), error)


def clear_failure_note(out_dir: str | Path) -> None:
    """At the start of a job: this rank's note from an earlier, failed attempt no longer applies."""
    _failure_note(out_dir, rank()).unlink(missing_ok=True)


def failure_notes(out_dir: str | Path) -> dict[str, str]:
    """The notes other ranks left, e.g. {"rank_1": "ValueError: ..."}."""
    return {p.name.removesuffix("_error.txt"): p.read_text().strip()
            for p in sorted(Path(out_dir).glob("rank_*_error.txt"))}


def share_from_main(fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 only and return its result on every rank (rank 0's files, decisions).

    The broadcast is also a barrier: whatever `fn` wrote exists before any rank returns.
    """
    if world_size() == 1:
        return fn()
    box = [fn() if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def split_map(fn: Callable[[list[T]], Sequence[R]], items: Sequence[T]) -> list[R]:
    """`fn(items)` with the items split across ranks; every rank gets all results, in order.

    `fn` maps a list to a list of the same length and must involve no collective of its own
    (ranks get different numbers of items).
    """
    n, w, r = len(items), world_size(), rank()
    if w == 1:
        return list(fn(list(items)))
    mine = list(fn([items[i] for i in range(r, n, w)]))
    if len(mine) != len(range(r, n, w)):
        raise RuntimeError(f"split_map: rank {r} returned {len(mine)} results for {len(range(r, n, w))} items")
    parts: list[list[R] | None] = [None] * w
    dist.all_gather_object(parts, mine)
    out: list[Any] = [None] * n
    for k, part in enumerate(parts):
        for j, value in enumerate(part or []):
            out[k + j * w] = value
    return out


def main_first(fn: Callable[[], T]) -> T:
    """`fn()` on rank 0, then on the other ranks once it is done: they find what rank 0 wrote
    (seed data built once, read by everyone). `fn` must involve no collective."""
    out = fn() if is_main() else None
    barrier()
    if not is_main():
        out = fn()
    return out  # type: ignore[return-value]
