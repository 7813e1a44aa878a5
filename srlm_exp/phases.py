"""Wall time and peak memory of the phases of one iteration (summary.json: `timings`, seconds;
`peak_rss_gb`, resident memory; `peak_gpu_memory_gb` on a GPU), so a run shows where its time and memory go.

Phases nest: the generation phases run inside training's fit (its `on_fit_end` callbacks). A nested
phase's figures are its own, and the enclosing phase's exclude it. `train` is therefore the fit
alone, not the AIFT generation that follows it. GPU memory is this process's device, i.e. rank 0's
under DDP/FSDP (rank 0 writes the summary). It is the peak allocated by torch, read with
`torch.cuda.max_memory_allocated` and reset at each phase boundary. Without CUDA no GPU memory is
recorded.

Resident memory (Linux, GPU or not) is the peak of this process's RSS plus that of its child processes
(vLLM's engine core when it runs in its own process, Lightning's other ranks, which its launcher starts
from rank 0), reset at the same boundaries; `job_peak_rss_gb` is the whole process's peak, phases or not.
Shared pages (libraries) count once per process, as `ps` counts them. Without /proc none is recorded.
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

GB = 1024 ** 3
PROGRESS_EVERY_SECONDS = 30.0  # a progress line at least this often: training (progress.py), generation (inference/bars.py)


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def _cuda() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def _read_and_reset_peak() -> int:
    """Peak bytes allocated since the last reset, starting a new count."""
    if not _cuda():
        return 0
    peak = torch.cuda.max_memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    return peak


# This process's own peak comes from the kernel's high-water mark (VmHWM), reset at each boundary by writing
# "5" to /proc/self/clear_refs: it is exact (a spike between two samples is not missed) and costs nothing while
# a phase runs. The kernel keeps no such mark over a process and its children, so a sampler thread adds them:
# every SAMPLE_SECONDS it sums VmRSS over this process and its descendants, but only reads anything when there
# are descendants (one small /proc read per thread of this process to find them). A child's peak shorter
# than SAMPLE_SECONDS can be missed; vLLM's engine core allocates its weights and KV cache once and keeps them.
# Where clear_refs cannot be written (some sandboxes), the sampler reads this process's VmRSS too.
SAMPLE_SECONDS = 0.2
_PROC = Path("/proc")


def _status_bytes(pid: int | str, key: str) -> int:
    """A `VmRSS`/`VmHWM` line of /proc/<pid>/status in bytes; 0 when the process is gone."""
    try:
        for line in (_PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    """Child processes of `pid` (started by any of its threads); [] where the kernel does not list them."""
    out: list[int] = []
    try:
        tasks = list((_PROC / str(pid) / "task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            pass
    return out


def _descendants(pid: int) -> list[int]:
    found, todo = [], _children(pid)
    while todo:
        child = todo.pop()
        found.append(child)
        todo += _children(child)
    return found


class _ResidentMeter:
    """The peak resident bytes of this process and its children since the last `read_and_reset`, and of the
    whole process. One per process: the kernel's high-water mark it resets is the process's."""

    def __init__(self) -> None:
        self.available = (_PROC / "self" / "status").exists()
        self.hwm_resettable = os.access(_PROC / "self" / "clear_refs", os.W_OK)
        self.lock = threading.Lock()
        self.sampled = 0      # the sampler's peak of self + children since the last reset
        self.job_peak = 0     # the whole process's, every reset window folded in
        self.open_phases = 0
        self.stop: threading.Event | None = None

    def _sample(self) -> int:
        children = _descendants(os.getpid())
        if not children and self.hwm_resettable:
            return 0  # VmHWM alone is this process's exact peak
        return _status_bytes("self", "VmRSS") + sum(_status_bytes(c, "VmRSS") for c in children)

    def _since_reset(self) -> int:
        own = _status_bytes("self", "VmHWM") if self.hwm_resettable else 0
        return max(self.sampled, own, self._sample())

    def _reset(self) -> None:
        self.sampled = 0
        if self.hwm_resettable:
            try:
                (_PROC / "self" / "clear_refs").write_text("5")
            except OSError:
                self.hwm_resettable = False

    def read_and_reset(self) -> int:
        """Peak bytes since the last reset, starting a new count (0 without /proc)."""
        if not self.available:
            return 0
        with self.lock:
            peak = self._since_reset()
            self.job_peak = max(self.job_peak, peak)
            self._reset()
        return peak

    def job_peak_bytes(self) -> int:
        if not self.available:
            return 0
        with self.lock:
            return max(self.job_peak, self._since_reset())

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(SAMPLE_SECONDS):
            with self.lock:  # a sample taken across a reset would count in the next phase
                self.sampled = max(self.sampled, self._sample())

    def enter(self) -> None:
        """A phase opens: sample while any is open."""
        self.open_phases += 1
        if self.available and self.open_phases == 1:
            self.stop = threading.Event()
            threading.Thread(target=self._run, args=(self.stop,), name="srlm-rss-sampler", daemon=True).start()

    def exit(self) -> None:
        self.open_phases -= 1
        if self.open_phases == 0 and self.stop is not None:
            self.stop.set()
            self.stop = None


_RESIDENT = _ResidentMeter()


def job_peak_rss_gb() -> float | None:
    """This process's (and its children's) peak resident memory so far, in GB; None without /proc."""
    peak = _RESIDENT.job_peak_bytes()
    return round(peak / GB, 3) if peak else None


@dataclass
class _Open:
    name: str
    start: float
    nested_seconds: float = 0.0
    peak: int = 0
    rss_peak: int = 0


@dataclass
class PhaseLog:
    seconds: dict[str, float] = field(default_factory=dict)
    peak_bytes: dict[str, int] = field(default_factory=dict)
    peak_rss_bytes: dict[str, int] = field(default_factory=dict)
    _open: list[_Open] = field(default_factory=list)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if self._open:  # the enclosing phase's peak so far is its own
            parent = self._open[-1]
            parent.peak = max(parent.peak, _read_and_reset_peak())
            parent.rss_peak = max(parent.rss_peak, _RESIDENT.read_and_reset())
        else:
            _read_and_reset_peak()
            _RESIDENT.read_and_reset()  # before any phase: the job's peak only
        me = _Open(name, time.time())
        self._open.append(me)
        _RESIDENT.enter()
        try:
            yield
        finally:
            self._open.pop()
            _RESIDENT.exit()
            rss = max(me.rss_peak, _RESIDENT.read_and_reset())
            if rss:
                self.peak_rss_bytes[name] = max(self.peak_rss_bytes.get(name, 0), rss)
            elapsed = time.time() - me.start
            self.seconds[name] = round(self.seconds.get(name, 0.0) + elapsed - me.nested_seconds, 2)
            if _cuda():
                self.peak_bytes[name] = max(self.peak_bytes.get(name, 0), me.peak, _read_and_reset_peak())
            if self._open:
                self._open[-1].nested_seconds += elapsed

    def summary(self) -> dict:
        """The entries for summary.json: timings always, peak resident memory where /proc tells it, peak GPU
        memory when CUDA was used."""
        out: dict = {"timings": dict(self.seconds)}
        if self.peak_rss_bytes:
            out["peak_rss_gb"] = {k: round(v / GB, 3) for k, v in self.peak_rss_bytes.items()}
        if self.peak_bytes:
            out["peak_gpu_memory_gb"] = {k: round(v / GB, 3) for k, v in self.peak_bytes.items()}
        return out
