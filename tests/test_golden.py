"""The smoke loop reproduces the golden artifacts byte for byte: a structural change of the loop must
not change what it produces. When a change is meant to alter behaviour, regenerate the fixture with
`python tests/fixtures/golden_smoke/make_golden.py` and say why in the commit."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "fixtures" / "golden_smoke"
sys.path.insert(0, str(GOLDEN))
from make_golden import ARTIFACTS, MODELS, summary_metrics, weight_stats  # noqa: E402


@pytest.mark.parametrize("rel", ARTIFACTS)
def test_smoke_artifact_matches_the_golden_one(smoke_run, rel):
    assert (smoke_run / rel).read_text() == (GOLDEN / rel).read_text(), rel


def test_smoke_summary_metrics_match_the_golden_ones(smoke_run):
    golden = json.loads((GOLDEN / "summary_metrics.json").read_text())
    assert json.loads(json.dumps(summary_metrics(smoke_run), sort_keys=True)) == golden


@pytest.mark.parametrize("model", MODELS)
def test_smoke_models_match_the_golden_ones(smoke_run, model):
    golden = json.loads((GOLDEN / "model_weights.json").read_text())[model]
    now = weight_stats(smoke_run / model)
    assert sorted(now) == sorted(golden)
    for name, stats in golden.items():
        assert now[name] == pytest.approx(stats, rel=1e-4, abs=1e-4), name
