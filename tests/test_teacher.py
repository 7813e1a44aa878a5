"""Zephyr's reward sources: a frozen teacher judges the AIFT candidates instead of the policy
(`judge.model_path`), and other models' samples join the policy's candidates, tagged with their source
(`callbacks.self_reward.candidate_models`)."""
from __future__ import annotations

import json

import pytest

from conftest import compose, run_job
from srlm_exp.artifacts import read_jsonl
from srlm_exp.checks import ConfigError
from srlm_exp.config import validate
from srlm_exp.judging.judge import Judge
from srlm_exp.records import CandidateJudgments
from srlm_exp.world import random_model


class _Models:
    """A ModelStore that hands out named stand-ins and records what was loaded and released."""

    def __init__(self):
        self.loaded, self.released = [], []

    def load_checkpoint(self, path):
        self.loaded.append(path)
        return f"model:{path}", f"tokenizer:{path}"

    def release(self, model):
        self.released.append(model)


class _RecordingJudge(Judge):
    def judge(self, model, tokenizer, instructions, candidates, batch_size=32, desc=""):
        self.used = (model, tokenizer)
        return [[CandidateJudgments(["Score: 3"], [3.0]) for _ in c] for c in candidates]


def _judge(model_path=None) -> _RecordingJudge:
    return _RecordingJudge("t", "<INSTRUCTION_HERE> <RESPONSE_HERE>", model_path=model_path)


def test_the_policy_judges_unless_a_teacher_is_set(tmp_path):
    models = _Models()
    own = _judge()
    own.judge_in_loop("policy", "policy-tok", ["q"], [["a", "b"]], models, iteration=1)
    assert own.used == ("policy", "policy-tok") and models.loaded == []

    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "config.json").write_text("{}")
    teacher = _judge(str(tmp_path / "teacher"))
    teacher.judge_in_loop("policy", "policy-tok", ["q"], [["a", "b"]], models, iteration=1)
    path = str(tmp_path / "teacher")
    assert teacher.used == (f"model:{path}", f"tokenizer:{path}")  # the teacher with its own tokenizer
    assert models.loaded == [path] and models.released == [f"model:{path}"]
    # The policy is still trained and evaluated as a judge with the same prompt.
    assert teacher.model_judge().template == own.template


def test_bad_teacher_and_candidate_settings_are_config_errors(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    for overrides, key in [(["judge.model_path=/no/such/teacher"], "judge.model_path"),
                           (["judge=oracle", f"judge.model_path={tmp_path}"], "judge.model_path"),  # oracle uses no model
                           (["callbacks.self_reward.candidate_models=[/no/such/model]"], "candidate_models[0]"),
                           (["callbacks.self_reward.candidates_per_model=0"], "candidates_per_model")]:
        with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
            validate(compose(["debug=smoke", *overrides]))


@pytest.fixture(scope="module")
def foreign_gpt2(tmp_path_factory):
    return random_model.save_random_model("gpt2", random_model.world_texts(), tmp_path_factory.mktemp("cand") / "gpt2")


def test_smoke_loop_with_a_teacher_judge_and_a_candidate_model(smoke_run, foreign_gpt2, tmp_path):
    """Zephyr's dDPO on the smoke world: the smoke run's M3 judges, a random GPT-2 (another tokenizer)
    adds one candidate per prompt, best-vs-random pairs; the loop reaches M3."""
    teacher = smoke_run / "iteration_3" / "model"
    out = tmp_path / "run"
    run_job(["debug=smoke", "logger=none", f"hydra.run.dir={out}", f"judge.model_path={teacher}",
             f"callbacks.self_reward.candidate_models=[{foreign_gpt2}]", "pairs=best_vs_random"], tmp_path / "run.log")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and [e["iteration"] for e in summary["iterations"]] == [0, 1, 2, 3]
    for t in (2, 3):
        rows = read_jsonl(out / f"iteration_{t}" / "candidates.jsonl")
        for row in rows:
            sources = [c["source"] for c in row["candidates"]]
            assert sources == ["policy"] * 3 + [str(foreign_gpt2)]  # the policy's N, then the candidate model's
            assert all(c["judgments"] for c in row["candidates"])  # every candidate judged, whoever wrote it
