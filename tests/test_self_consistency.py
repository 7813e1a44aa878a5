"""judge=self_consistency: agreement scores on hand numbers, answer extraction, and the smoke loop to M3."""
from __future__ import annotations

import json
import math
import re

import pytest

from conftest import compose, run_job
from srlm_exp.checks import ConfigError
from srlm_exp.config import validate
from srlm_exp.judging.self_consistency import SelfConsistencyJudge, agreement_scores, normalized_answer


def test_agreement_is_the_share_of_the_other_candidates_that_agree():
    assert agreement_scores(["4", "4", "5", "x"], 0, 5) == pytest.approx([5 / 3, 5 / 3, 0, 0])
    assert agreement_scores(["a", "a", "a"], 0, 5) == [5, 5, 5]
    assert all(math.isnan(s) for s in agreement_scores(["a"], 0, 5))  # nobody to agree with: missing, not 0


def test_answers_are_compared_normalised_or_by_the_pattern():
    assert normalized_answer("The answer is  4.") == normalized_answer("the answer is 4") == "the answer is 4"
    pattern = re.compile(r"The answer is ([^.]*)")
    assert normalized_answer("Sure. The answer is 4. Happy to help.", pattern) == normalized_answer("The answer is 4.", pattern)


def test_the_judge_scores_every_candidate_and_a_bad_pattern_is_a_config_error():
    judge = SelfConsistencyJudge("sc", "<INSTRUCTION_HERE> <RESPONSE_HERE>", answer_pattern=r"The answer is ([^.]*)")
    [[a, b, c]] = judge.scores([["The answer is 4.", "Well. The answer is 4.", "The answer is 5."]])
    assert (a.score, b.score, c.score) == (2.5, 2.5, 0.0)  # one of two others agrees
    with pytest.raises(ConfigError, match="judge.answer_pattern"):
        validate(compose(["judge=self_consistency", "judge.answer_pattern='a(b'"]))


def test_smoke_loop_reaches_m3_with_self_consistency(tmp_path):
    job = tmp_path / "job"
    # Pairs need a prompt whose samples partly agree: more prompts and samples than the smoke's 8 x 3, where a
    # 64-wide model's samples are often all alike or all different (all ties, no pair; seen on 2 threads).
    run_job(["debug=smoke", "logger=none", "judge=self_consistency", "prompts.n_prompts=32",
             "callbacks.self_reward.n_candidates=6", f"hydra.run.dir={job}"], tmp_path / "log")
    summary = json.loads((job / "summary.json").read_text())
    assert summary["status"] == "finished" and [e["iteration"] for e in summary["iterations"]] == [0, 1, 2, 3]
    row = json.loads((job / "iteration_2" / "candidates.jsonl").read_text().splitlines()[0])
    assert all("others agree" in c["judgments"][0] for c in row["candidates"])
