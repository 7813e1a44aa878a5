"""PhaseLog: each phase's own seconds and peak GPU memory, nested phases kept apart (CUDA faked)."""
from __future__ import annotations

import pytest

from srlm_exp import phases as phases_module
from srlm_exp.phases import GB, PhaseLog


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
    assert log.summary() == {"timings": {"eval": 2.5}}
