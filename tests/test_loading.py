"""`release` frees a model's memory even while references to it live on (a Lightning module, a caller's
variable), so the next model loads into memory the previous one gave back."""
from __future__ import annotations

import os

import torch

from srlm_exp.models.loading import release


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_release_returns_the_memory_while_references_remain():
    before = _rss_mb()
    model = torch.nn.Sequential(*[torch.nn.Linear(2048, 2048) for _ in range(16)])  # 256 MiB of fp32
    holder = {"module": model}  # another reference, as a LightningModule would keep
    grown = _rss_mb() - before
    assert grown > 200, f"the model should take ~256 MiB, RSS grew {grown:.0f} MiB"
    release(model)
    assert _rss_mb() - before < 0.25 * grown, "the weights' memory did not come back"
    assert all(p.numel() == 0 for p in holder["module"].parameters())
