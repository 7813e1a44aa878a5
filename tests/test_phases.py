"""PhaseLog: each phase's own seconds, peak GPU memory (CUDA faked) and peak resident memory (real: this
process's allocations and a child process's), nested phases kept apart."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from srlm_exp import phases as phases_module
from srlm_exp.phases import GB, PhaseLog, job_peak_rss_gb


class FakeDevice:
    """A clock and torch.cuda's peak-memory counters, driven by the test."""

    def __init__(self):
        self.now, self.allocated, self.peak = 0.0, 0, 0

    def run(self, seconds: float, peak: int, after: int) -> None:
        """Time passes; allocation rises to `peak`, then falls to `after`."""
        self.now += seconds
        self.peak = max(self.peak, peak)
        self.allocated = after

    def reset(self) -> None:
        self.peak = self.allocated


@pytest.fixture
def device(monkeypatch):
    d = FakeDevice()
    monkeypatch.setattr(phases_module.time, "time", lambda: d.now)
    monkeypatch.setattr(phases_module, "_cuda", lambda: True)
    monkeypatch.setattr(phases_module.torch.cuda, "max_memory_allocated", lambda *a: d.peak)
    monkeypatch.setattr(phases_module.torch.cuda, "reset_peak_memory_stats", lambda *a: d.reset())
    return d


def test_nested_phases_have_their_own_time_and_peak(device):
    log = PhaseLog()
    device.run(5, peak=9 * GB, after=1 * GB)  # before any phase: counted nowhere
    with log.phase("train"):
        device.run(10, peak=6 * GB, after=2 * GB)  # the fit
        with log.phase("prompts"):
            device.run(3, peak=3 * GB, after=2 * GB)
        with log.phase("candidates_and_judging"):
            device.run(7, peak=8 * GB, after=2 * GB)
        device.run(1, peak=4 * GB, after=1 * GB)  # saving, after the generation
    with log.phase("eval"):
        device.run(2, peak=2 * GB, after=1 * GB)
    assert log.seconds == {"prompts": 3, "candidates_and_judging": 7, "train": 11, "eval": 2}
    assert log.summary()["peak_gpu_memory_gb"] == {"prompts": 3, "candidates_and_judging": 8, "train": 6, "eval": 2}


def test_a_phase_that_raises_is_still_recorded(device):
    log = PhaseLog()
    with pytest.raises(RuntimeError), log.phase("train"):
        device.run(4, peak=5 * GB, after=0)
        raise RuntimeError("boom")
    assert log.seconds == {"train": 4} and log.peak_bytes == {"train": 5 * GB}


def test_without_cuda_only_time_is_recorded(monkeypatch):
    clock = iter([0.0, 2.5])
    monkeypatch.setattr(phases_module.time, "time", lambda: next(clock))
    monkeypatch.setattr(phases_module, "_cuda", lambda: False)
    log = PhaseLog()
    with log.phase("eval"):
        pass
    summary = log.summary()
    assert summary["timings"] == {"eval": 2.5} and "peak_gpu_memory_gb" not in summary


# --- resident memory, measured ----------------------------------------------------------------------

linux_proc = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="resident memory is read from /proc")
MB = 1024 ** 2
BIG = 256 * MB


def _rss() -> int:
    return phases_module._status_bytes("self", "VmRSS")


def _allocate_and_free() -> None:
    buf = np.ones(BIG // 8)  # written, so resident; freed on return (numpy maps a buffer this large)
    assert buf[-1] == 1.0


@linux_proc
def test_a_phase_records_its_own_peak_resident_memory_and_its_parent_and_sibling_do_not():
    log = PhaseLog()
    base = _rss()
    with log.phase("train"):
        with log.phase("candidates_and_judging"):
            _allocate_and_free()
        with log.phase("prompts"):
            pass
    with log.phase("eval"):
        pass
    assert _rss() < base + BIG / 4  # the buffer went back to the system
    peak = log.summary()["peak_rss_gb"]
    assert set(peak) == {"train", "candidates_and_judging", "prompts", "eval"}
    assert peak["candidates_and_judging"] * GB >= base + 0.9 * BIG
    for other in ("train", "prompts", "eval"):  # each holds what was resident, not the nested phase's spike
        assert base * 0.9 <= peak[other] * GB < base + BIG / 2, other
    assert job_peak_rss_gb() >= peak["candidates_and_judging"]


@linux_proc
def test_a_child_processs_memory_counts_in_the_phase_it_runs_in():
    """A child (vLLM's engine core in its own process, another rank) is this job's memory too: sampled."""
    log = PhaseLog()
    base = _rss()
    with log.phase("candidates_and_judging"):
        script = f"import time; b = b'x' * {BIG}; print('ready', flush=True); time.sleep(60)"
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "ready"
            time.sleep(4 * phases_module.SAMPLE_SECONDS)
        finally:
            child.kill()
            child.wait()
    with log.phase("eval"):
        pass
    peak = log.summary()["peak_rss_gb"]
    assert peak["candidates_and_judging"] * GB >= base + 0.9 * BIG
    assert peak["eval"] * GB < base + BIG / 2


@linux_proc
def test_without_a_resettable_high_water_mark_the_sampler_reads_this_process_too(monkeypatch):
    """Where /proc/self/clear_refs cannot be written (some sandboxes), the sampler's figure stands alone."""
    monkeypatch.setattr(phases_module._RESIDENT, "hwm_resettable", False)
    log = PhaseLog()
    base = _rss()
    with log.phase("train"):
        buf = np.ones(BIG // 8)
        time.sleep(3 * phases_module.SAMPLE_SECONDS)
        del buf
    with log.phase("eval"):
        pass
    peak = log.summary()["peak_rss_gb"]
    assert peak["train"] * GB >= base + 0.9 * BIG and peak["eval"] * GB < base + BIG / 2


def test_a_logged_bar_writes_progress_lines_with_an_eta_and_a_last_line(caplog, monkeypatch):
    """Generation in a log file: lines with done/total and an ETA at most every `every` seconds, one at the end."""
    import logging

    from srlm_exp.inference import bars as bars_module
    from srlm_exp.inference.bars import LoggedBar, progress_bar

    clock = iter(range(0, 1000, 10))  # each reading of the clock is 10 s later
    monkeypatch.setattr(bars_module.time, "time", lambda: float(next(clock)))
    with caplog.at_level(logging.INFO, logger="srlm_exp.progress"):
        bar = LoggedBar(total=8, desc="candidates (vLLM)", every=25.0)
        for _ in range(4):
            bar.update(2)
        bar.close()
    lines = [r.getMessage() for r in caplog.records]
    # The clock reads 10 s later each time: the first line comes after 3 updates (30 s >= 25 s), not before.
    assert lines[0] == "candidates (vLLM): 6/8 after 40.0 s (0.15/s, ETA 13.3 s)", lines
    assert lines[-1].startswith("candidates (vLLM): 8/8 done in"), lines
    assert len(lines) == 2  # not one per update
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="srlm_exp.progress"):
        quiet = progress_bar(8, "judgments", show=False)
        quiet.update(8)
        quiet.close()
    assert caplog.records == []
