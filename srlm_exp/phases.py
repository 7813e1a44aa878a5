"""Wall time and peak GPU memory of the phases of one iteration (summary.json: `timings`, seconds, and
`peak_gpu_memory_gb`), so a run shows where its time and memory go.

Phases nest: the generation phases run inside training's fit (its `on_fit_end` callbacks). A nested
phase's figures are its own, and the enclosing phase's exclude it. `train` is therefore the fit
alone, not the AIFT generation that follows it. Memory is this process's device, i.e. rank 0's
under DDP/FSDP (rank 0 writes the summary). It is the peak allocated by torch, read with
`torch.cuda.max_memory_allocated` and reset at each phase boundary. Without CUDA no memory is
recorded.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch

GB = 1024 ** 3


def _cuda() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def _read_and_reset_peak() -> int:
    """Peak bytes allocated since the last reset, starting a new count."""
    if not _cuda():
        return 0
    peak = torch.cuda.max_memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    return peak


@dataclass
class _Open:
    name: str
    start: float
    nested_seconds: float = 0.0
    peak: int = 0


@dataclass
class PhaseLog:
    seconds: dict[str, float] = field(default_factory=dict)
    peak_bytes: dict[str, int] = field(default_factory=dict)
    _open: list[_Open] = field(default_factory=list)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if self._open:  # the enclosing phase's peak so far is its own
            parent = self._open[-1]
            parent.peak = max(parent.peak, _read_and_reset_peak())
        else:
            _read_and_reset_peak()
        me = _Open(name, time.time())
        self._open.append(me)
        try:
            yield
        finally:
            self._open.pop()
            elapsed = time.time() - me.start
            self.seconds[name] = round(self.seconds.get(name, 0.0) + elapsed - me.nested_seconds, 2)
            if _cuda():
                self.peak_bytes[name] = max(self.peak_bytes.get(name, 0), me.peak, _read_and_reset_peak())
            if self._open:
                self._open[-1].nested_seconds += elapsed

    def summary(self) -> dict:
        """The entries for summary.json: timings always, peak GPU memory when CUDA was used."""
        out: dict = {"timings": dict(self.seconds)}
        if self.peak_bytes:
            out["peak_gpu_memory_gb"] = {k: round(v / GB, 3) for k, v in self.peak_bytes.items()}
        return out
