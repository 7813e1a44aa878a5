"""The smoke loop's training after M1 moves the model, by more than stated thresholds and the right way
(issue 40). Before the smoke preset gave `train` its own step, M2 differed from M1 by 6.6e-5 of the weights'
norm, its own pairs' margin rose by 0.008 nats and M1, M2 and M3 gave the same answers: a loop whose DPO
trained nothing would have looked the same. Measured on the shared smoke job (conftest.smoke_run)."""
from __future__ import annotations

import pytest

from movement import margin_rise, relative_update
from srlm_exp.artifacts import read_jsonl

# Measured at the smoke budget (conf/debug/smoke.yaml: 3 DPO steps at 1e-3, no warm-up), tiny model, one
# thread: M2 - M1 is 8.2e-3 of M1's norm and M3 - M2 8.8e-3; the pairs' margin rose by 0.74 and 0.80 nats.
# The thresholds sit ~8x and ~3x below those and ~15x and ~25x above what the old budget moved.
MIN_RELATIVE_UPDATE = 1e-3
MIN_MARGIN_RISE = 0.25  # nats, mean over the iteration's pairs of log p(chosen) - log p(rejected)


@pytest.mark.parametrize("t", [2, 3])
def test_each_smoke_iteration_moves_the_weights(smoke_run, t):
    update = relative_update(smoke_run / f"iteration_{t - 1}" / "model", smoke_run / f"iteration_{t}" / "model")
    assert update > MIN_RELATIVE_UPDATE, f"M{t} - M{t - 1}: {update:.3g} of M{t - 1}'s norm"


@pytest.mark.parametrize("t", [2, 3])
def test_each_smoke_iteration_raises_its_own_pairs_margin(smoke_run, t):
    """M(t) prefers the chosen answers of the pairs it was trained on more than M(t-1) did."""
    pairs = read_jsonl(smoke_run / f"iteration_{t}" / "pairs.jsonl")
    assert pairs
    rise = margin_rise(smoke_run, t, pairs)
    assert rise > MIN_MARGIN_RISE, f"M{t}'s margin on its {len(pairs)} pairs rose by {rise:.4f} nats over M{t - 1}'s"
