"""judge=implicit_reward (CREAM): candidates scored by beta * (log pi_t - log pi_{t-1})."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import run_job
from srlm_exp.artifacts import read_jsonl
from srlm_exp.chat import IGNORE_INDEX, chat_example
from srlm_exp.checks import ConfigError
from srlm_exp.judging.implicit_reward import ImplicitRewardJudge, implicit_rewards
from srlm_exp.judging.judge import Judge
from srlm_exp.models.loading import load_model, load_tokenizer

TEMPLATE = "<INSTRUCTION_HERE> <RESPONSE_HERE>"


def test_the_reward_is_beta_times_the_log_ratio():
    assert implicit_rewards([-2.0, -5.0], [-3.0, -4.0], beta=0.1) == pytest.approx([0.1, -0.1])
    with pytest.raises(ValueError):
        implicit_rewards([-1.0], [-1.0, -2.0], beta=0.1)  # one reference value per candidate


def test_beta_must_be_positive_and_the_judge_needs_the_loop():
    with pytest.raises(ConfigError, match="beta"):
        ImplicitRewardJudge("implicit_reward", TEMPLATE, beta=0)
    judge = ImplicitRewardJudge("implicit_reward", TEMPLATE)
    assert not hasattr(judge, "judge")  # it scores in the loop only (it needs M(t-1))
    assert type(judge.model_judge()) is Judge  # the model is still trained and evaluated as a prompt judge


def _response_logp(model, tok, instruction: str, response: str) -> float:
    ex = chat_example(tok, instruction, response, 4096)
    ids = torch.tensor([ex.input_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
    labels = torch.tensor(ex.labels[1:])
    keep = labels != IGNORE_INDEX
    return logp[keep].gather(1, labels[keep][:, None]).sum().item()


def test_smoke_loop_scores_candidates_by_the_log_ratio_of_m_t_and_m_t_minus_1(tmp_path):
    out = tmp_path / "run"
    run_job(["debug=smoke", "logger=none", f"hydra.run.dir={out}", "judge=implicit_reward"], tmp_path / "run.log")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and [e["iteration"] for e in summary["iterations"]] == [0, 1, 2, 3]
    # AIFT(M2) (iteration_3's candidates): policy M2, reference M1, both saved in the job directory.
    tok = load_tokenizer(out / "iteration_1" / "model")
    m1, m2 = (load_model(out / f"iteration_{t}" / "model", tok).eval() for t in (1, 2))
    rows = read_jsonl(out / "iteration_3" / "candidates.jsonl")
    scores = [c["score"] for r in rows for c in r["candidates"]]
    assert len(set(scores)) > 1, "the log ratio separates the candidates"
    for row in rows[:3]:
        for c in row["candidates"]:
            expected = 0.1 * (_response_logp(m2, tok, row["instruction"], c["text"])
                              - _response_logp(m1, tok, row["instruction"], c["text"]))
            assert c["score"] == pytest.approx(expected, abs=1e-3)
