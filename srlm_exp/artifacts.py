"""Atomic file writes: every phase's file is written completely or not at all, so a job
stopped mid-phase never leaves a half file that a resumed run would mistake for finished."""
from __future__ import annotations

import json
import os
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success rename it onto `path` (file or directory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unique per process: two jobs (e.g. SLURM array tasks) may build the same cached M0 at once.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    if tmp.is_dir():
        shutil.rmtree(tmp)
    elif tmp.exists():
        tmp.unlink()
    try:
        yield tmp
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise
    if tmp.is_dir() and path.is_dir():
        # Directories are written once; a concurrent writer of the same one (two SLURM jobs
        # building the same cached M0) finished first, and its copy is kept.
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, path)
    _stop_if_asked(path)


@contextmanager
def atomic_named_file(path: str | Path) -> Iterator[Path]:
    """As `atomic_path`, for one file whose temporary copy keeps the file's own name (in a temporary sibling
    directory): for writers that store the name in the file. torch.save names its zip archive after the file,
    so a temporary name would change the file's bytes."""
    path = Path(path)
    tmp_dir = path.with_name(f".{path.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True)
    try:
        yield tmp_dir / path.name
        os.replace(tmp_dir / path.name, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    _stop_if_asked(path)


# Every artifact is written here, so a job can be stopped at any phase boundary by naming the artifact that
# ends the phase (tests/test_kill_resume.py): SRLM_EXP_KILL_AFTER=<the path's last components>[@n], e.g.
# "iteration_2/model" or "summary.json@3" (its third write in this process). SIGKILL, as from the OOM killer or
# a scheduler: nothing of the process runs after it (no handler, no clean-up, no `finally`).
KILL_AFTER = "SRLM_EXP_KILL_AFTER"
_writes: dict[str, int] = {}


def _stop_if_asked(path: Path) -> None:
    wanted = os.environ.get(KILL_AFTER)
    if not wanted:
        return
    name, _, nth = wanted.partition("@")
    parts = Path(name).parts
    if path.parts[-len(parts):] != parts:
        return
    _writes[name] = _writes.get(name, 0) + 1
    if _writes[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write rows as JSON lines (readable by datasets.load_dataset("json", ...)), atomically. NaN is
    refused: a missing value is null in every file the project writes."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
    return Path(path)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_json(path: str | Path, obj: Any) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False, allow_nan=False, default=_jsonable)
            f.write("\n")
    return Path(path)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")
