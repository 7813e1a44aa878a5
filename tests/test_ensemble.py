"""judge=ensemble: members' scores mapped onto one scale and combined by mean or median, disagreement kept."""
from __future__ import annotations

import json
import math

import pytest

from conftest import compose, run_job
from srlm_exp.artifacts import read_jsonl
from srlm_exp.checks import ConfigError
from srlm_exp.config import validate
from srlm_exp.judging.ensemble import EnsembleJudge, combine, rescale
from srlm_exp.judging.judge import Judge
from srlm_exp.records import CandidateJudgments

TEMPLATE = "<INSTRUCTION_HERE> <RESPONSE_HERE>"


def test_rescale_and_combine_on_hand_numbers():
    assert rescale(3.0, (1, 5), (0, 5)) == pytest.approx(2.5)   # holistic 1-5 onto additive 0-5
    assert rescale(5.0, (1, 5), (0, 5)) == 5.0 and rescale(1.0, (1, 5), (0, 5)) == 0.0
    assert math.isnan(rescale(math.nan, (1, 5), (0, 5)))
    value, spread = combine([1.0, 2.0, 6.0], "mean")
    assert value == pytest.approx(3.0) and spread == pytest.approx(math.sqrt(14 / 3))
    assert combine([1.0, 2.0, 6.0, math.nan], "median") == (2.0, pytest.approx(math.sqrt(14 / 3)))
    assert all(math.isnan(x) for x in combine([math.nan], "mean"))


class _Fixed(Judge):
    """A member that gives every candidate of a prompt the scores listed for it."""

    def __init__(self, scores, score_range):
        super().__init__("fixed", TEMPLATE, score_range=score_range)
        self.scores = scores

    def judge(self, model, tokenizer, instructions, candidates, batch_size=32, desc=""):
        return [[CandidateJudgments([f"Score: {s}"], [s]) for s in self.scores[:len(c)]] for c in candidates]


def test_members_are_mapped_then_combined_and_unscored_members_left_out():
    members = {"a": _Fixed([5.0, 0.0, math.nan], (0, 5)), "b": _Fixed([1.0, 1.0, math.nan], (1, 5))}
    mean = EnsembleJudge("ensemble", TEMPLATE, members=members, score_range=(0, 5))
    got = mean.judge_in_loop(None, None, ["q"], [["x", "y", "z"]], models=None, iteration=2)[0]
    assert got[0].score == pytest.approx(2.5)   # (5 + 0) / 2: b's 1 is the bottom of its scale
    assert got[1].score == pytest.approx(0.0)
    assert math.isnan(got[2].score)             # no member scored it: missing, never a number
    assert "[a: Score: 5.0 -> 5.00]" in got[0].texts[0] and "disagreement 2.500" in got[0].texts[0]
    median = EnsembleJudge("ensemble", TEMPLATE, members={**members, "c": _Fixed([4.0] * 3, (0, 5))}, combine="median")
    assert median.judge_in_loop(None, None, ["q"], [["x", "y", "z"]], None, 2)[0][0].score == pytest.approx(4.0)


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="combine"):
        validate(compose(["judge=ensemble", "judge.combine=max"]))
    with pytest.raises(ConfigError, match="members"):
        EnsembleJudge("ensemble", TEMPLATE, members={"a": _Fixed([1.0], (0, 5))})


def test_smoke_loop_reaches_m3_with_an_ensemble(tmp_path):
    out = tmp_path / "run"
    run_job(["debug=smoke", "logger=none", f"hydra.run.dir={out}", "judge=ensemble",
             "judge.members.additive5.num_judgments=1", "judge.members.holistic5.num_judgments=1"], tmp_path / "run.log")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and [e["iteration"] for e in summary["iterations"]] == [0, 1, 2, 3]
    row = read_jsonl(out / "iteration_2" / "candidates.jsonl")[0]
    text = row["candidates"][0]["judgments"][0]
    assert "[additive5:" in text and "[holistic5:" in text and "disagreement" in text
    for t in (2, 3):  # the disagreement of each AIFT set reaches the summary (and W&B)
        report = summary["iterations"][t]["judge_report"]
        assert report["members"] == ["additive5", "holistic5"] and report["mean_disagreement"] >= 0
