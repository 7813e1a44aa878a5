"""Curriculum (seed 004): judged prompts selected by measured difficulty, logged per iteration."""
from __future__ import annotations

import json
import math

import pytest

from conftest import LORA_SMOKE, compose, run_job
from srlm_exp.artifacts import read_jsonl
from srlm_exp.checks import ConfigError
from srlm_exp.config import validate
from srlm_exp.generation.curriculum import Curriculum, SpreadCurriculum, SuccessCurriculum, score_spread, success_rate
from srlm_exp.records import CandidateJudgments, JudgedCandidate, PromptCandidates
from srlm_exp.training.replay import training_candidates

NAN = math.nan


def row(pid: int, scores, correct=None) -> PromptCandidates:
    correct = correct or [None] * len(scores)
    return PromptCandidates(pid, f"q{pid}", [JudgedCandidate(f"a{k}", 1, CandidateJudgments(["j"], [s]), graded=c is not None,
                                                             gt_correct=c) for k, (s, c) in enumerate(zip(scores, correct))])


def test_difficulty_measures_on_hand_numbers():
    assert score_spread(row(0, [1.0, 4.0, NAN, 2.0])) == 3.0
    assert math.isnan(score_spread(row(0, [1.0, NAN])))
    assert success_rate(row(0, [1, 1, 1, 1], [True, False, False, True])) == 0.5
    assert math.isnan(success_rate(row(0, [1, 1])))


def test_selection_and_its_report():
    rows = [row(0, [1.0, 4.0]), row(1, [2.0, 2.5]), row(2, [3.0, NAN])]
    kept, report = SpreadCurriculum(min_spread=1.0).select(rows)
    assert [r.prompt_id for r in kept] == [0]
    assert report == {"by": "score_spread", "kept": 1, "of": 3, "selected_prompt_ids": [0], "mean_kept": 3.0, "mean_all": 1.75}
    rows = [row(k, [1] * 4, c) for k, c in enumerate([[True] * 4, [True, False, False, False], [True, True, False, False]])]
    kept, report = SuccessCurriculum(0.25, 0.75).select(rows)
    assert [r.prompt_id for r in kept] == [1, 2] and report["mean_kept"] == pytest.approx(0.375)
    assert Curriculum().select(rows) == (rows, None)
    with pytest.raises(ValueError, match="none of the 3 prompts .* widen curriculum.min_success"):
        SuccessCurriculum(0.6, 0.9).select(rows)


def test_bad_settings_and_the_grader_requirement():
    with pytest.raises(ConfigError, match=r"curriculum\.min_success"):
        validate(compose(["debug=smoke", "curriculum=success", "curriculum.min_success=0.9", "curriculum.max_success=0.1"]))
    with pytest.raises(ConfigError, match=r"curriculum\.min_spread"):
        validate(compose(["debug=smoke", "curriculum=spread", "curriculum.min_spread=-1"]))


@pytest.mark.parametrize("option,train,extra", [("spread", "dpo", []), ("success", "reinforce", []),
                                               ("success", "reinforce", LORA_SMOKE)],
                         ids=["spread", "success", "success-lora"])
def test_smoke_loop_trains_on_the_selected_prompts(option, train, extra, tmp_path):
    out = tmp_path / "run"
    overrides = {"spread": ["curriculum.min_spread=0.5"], "success": ["judge=oracle", "curriculum.min_success=0",
                                                                     "curriculum.max_success=0.5"]}[option]
    run_job(["debug=smoke", "logger=none", f"hydra.run.dir={out}", f"curriculum={option}", f"train={train}",
             "train.min_examples=1", *overrides, *extra], tmp_path / "run.log")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and [e["iteration"] for e in summary["iterations"]] == [0, 1, 2, 3]
    for t in (2, 3):
        report = json.loads((out / f"iteration_{t}" / "curriculum.json").read_text())
        assert summary["iterations"][t]["curriculum"]["kept"] == report["kept"] <= report["of"] == 8  # logged
        ids = set(report["selected_prompt_ids"])
        if train == "dpo":
            instructions = {r["instruction"] for r in read_jsonl(out / f"iteration_{t}" / "candidates.jsonl")
                            if r["prompt_id"] in ids}
            assert {p["instruction"] for p in read_jsonl(out / f"iteration_{t}" / "pairs.jsonl")} <= instructions
        assert {r["prompt_id"] for r in training_candidates(out / f"iteration_{t}")} == ids
