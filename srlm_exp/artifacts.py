"""Atomic file writes: every phase's file is written completely or not at all, so a job
stopped mid-phase never leaves a half file that a resumed run would mistake for finished."""
from __future__ import annotations

import json
import os
import shutil
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
        return
    os.replace(tmp, path)


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
