"""The warm-up + cosine schedule (srlm_exp/training/optim.py): what it shares with transformers' cosine schedule
with a min_lr, and where it differs, the reason it is kept (issue 38, goal 6)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from conftest import lrs_per_step
from srlm_exp.training.optim import adamw_with_cosine

transformers_optimization = pytest.importorskip("transformers.optimization")


def _lrs(make_scheduler, total: int) -> list[float]:
    return lrs_per_step(*make_scheduler([torch.nn.Parameter(torch.zeros(1))]), total)


def _ours(total: int, warmup: int, lr: float, min_lr: float):
    def make(params):
        module = SimpleNamespace(trainer=SimpleNamespace(estimated_stepping_batches=total))
        conf = adamw_with_cosine(module, params, lr=lr, min_lr=min_lr, warmup_steps=warmup, weight_decay=0.0)
        return conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    return make


def _transformers(total: int, warmup: int, lr: float, min_lr: float):
    def make(params):
        optimizer = torch.optim.AdamW(params, lr=lr)
        return optimizer, transformers_optimization.get_cosine_with_min_lr_schedule_with_warmup(
            optimizer, warmup, total, min_lr_rate=min_lr / lr)
    return make


@pytest.mark.parametrize("total,warmup", [(20, 0), (20, 5), (7, 1), (100, 10)])
def test_the_decay_to_min_lr_is_transformers_step_for_step(total, warmup):
    ours = _lrs(_ours(total, warmup, 1e-3, 1e-4), total)
    theirs = _lrs(_transformers(total, warmup, 1e-3, 1e-4), total)
    assert ours[warmup:] == pytest.approx(theirs[warmup:], rel=1e-9)
    assert ours[-1] > 1e-4 and min(ours[warmup:]) >= 1e-4 * (1 - 1e-9)  # decays towards min_lr, never below


@pytest.mark.parametrize("warmup", [1, 5])
def test_the_warm_up_never_trains_a_step_at_lr_zero_where_transformers_does(warmup):
    ours = _lrs(_ours(20, warmup, 1e-3, 1e-4), warmup + 1)
    theirs = _lrs(_transformers(20, warmup, 1e-3, 1e-4), warmup + 1)
    assert theirs[0] == 0.0
    assert ours == pytest.approx([1e-3 * (k + 1) / (warmup + 1) for k in range(warmup + 1)], rel=1e-9)
