"""judge=composite (Sparrow): weighted components, rule probabilities, the length penalty and the format check."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from conftest import compose, run_job
from srlm_exp.artifacts import read_jsonl
from srlm_exp.checks import ConfigError
from srlm_exp.config import validate
from srlm_exp.judging.composite import (CompositeJudge, FormatCheck, ResponseLength, RuleJudge, component_report,
                                        weighted_sum)
from srlm_exp.records import CandidateJudgments

TEMPLATE = "<INSTRUCTION_HERE> <RESPONSE_HERE>"


def test_weighted_sum_and_the_report_on_hand_numbers():
    w = {"pref": 1.0, "length": -0.5}
    assert weighted_sum({"pref": 4.0, "length": 2.0}, w) == 3.0
    assert math.isnan(weighted_sum({"pref": math.nan, "length": 2.0}, w))  # missing stays missing
    report = component_report([{"pref": 4.0, "length": 2.0}, {"pref": 2.0, "length": 6.0}], w)
    # means 3 and 4; contributions |1*s| -> 3, |-0.5*s| -> 2: shares 0.6 and 0.4
    assert report == {"pref": {"mean": 3.0, "share": pytest.approx(0.6)}, "length": {"mean": 4.0, "share": pytest.approx(0.4)}}


class _Tok:
    pad_token_id = 0
    vocab = {"Yes": 5, "No": 6}

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [self.vocab.get(w, 7) for w in text.split()]}

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=False):
        return messages[0]["content"]


class _Model(torch.nn.Module):
    """Next-token logits whose Yes/No gap is the prompt's length: P(Yes) = sigmoid(len)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask):
        logits = torch.zeros(*input_ids.shape, 8)
        logits[:, -1, 5] = attention_mask.sum(1).float()
        return SimpleNamespace(logits=logits)


def test_rule_judge_scores_the_probability_of_yes():
    judge = RuleJudge("short", "Be short.", template="<RULE_HERE> <INSTRUCTION_HERE> <RESPONSE_HERE>")
    got = judge.judge(_Model(), _Tok(), ["q"], [["a", "a b c"]])[0]
    # prompts "Be short. q a" (4 tokens) and "Be short. q a b c" (6 tokens)
    assert [j.score for j in got] == pytest.approx([1 / (1 + math.exp(-4)), 1 / (1 + math.exp(-6))])
    with pytest.raises(ValueError, match="different tokens"):
        RuleJudge("r", "Be short.", yes="Yes", no="Yes").judge(_Model(), _Tok(), ["q"], [["a"]])


def test_length_and_format_components():
    tok = _Tok()
    assert [j.score for j in ResponseLength().judge_in_loop(None, tok, ["q"], [["a b", "a"]], None, 1)[0]] == [2.0, 1.0]
    fmt = FormatCheck(r"The answer is [^.]+\.")
    assert [j.score for j in fmt.judge_in_loop(None, tok, ["q"], [["The answer is 4.", "4", "The answer is 4. Hi"]],
                                               None, 1)[0]] == [1.0, 0.0, 0.0]


class _Const:
    def __init__(self, value):
        self.value = value

    def judge_in_loop(self, policy, tokenizer, instructions, candidates, models, iteration, batch_size=32):
        return [[CandidateJudgments(["x"], [self.value]) for _ in c] for c in candidates]


def test_the_composite_is_the_weighted_sum_and_weights_must_match_the_components():
    judge = CompositeJudge("composite", TEMPLATE, components={"a": _Const(4.0), "b": _Const(2.0)}, weights={"a": 1, "b": -0.5})
    got = judge.judge_in_loop(None, None, ["q"], [["x", "y"]], None, 1)[0]
    assert [j.score for j in got] == [3.0, 3.0] and "[a: 4.000 x 1]" in got[0].texts[0]
    assert judge.last_report["a"]["share"] == pytest.approx(0.8)
    with pytest.raises(ConfigError, match=r"weights: do not match the components \(no weight for b; c is no component\)"):
        CompositeJudge("composite", TEMPLATE, components={"a": _Const(1.0), "b": _Const(1.0)}, weights={"a": 1, "c": 1})
    with pytest.raises(ConfigError, match="weights"):
        validate(compose(["judge=composite", "~judge.weights.format"]))
    with pytest.raises(ConfigError, match="pattern"):
        validate(compose(["judge=composite", "judge.components.format.pattern='[unclosed'"]))


def test_smoke_loop_reaches_m3_with_the_composite_reward(tmp_path):
    out = tmp_path / "run"
    run_job(["debug=smoke", "logger=none", f"hydra.run.dir={out}", "judge=composite",
             "judge.components.preference.num_judgments=1"], tmp_path / "run.log")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and [e["iteration"] for e in summary["iterations"]] == [0, 1, 2, 3]
    text = read_jsonl(out / "iteration_2" / "candidates.jsonl")[0]["candidates"][0]["judgments"][0]
    for k in ("preference", "expected_form", "nothing_extraneous", "length", "format"):
        assert f"[{k}: " in text
    assert "share" in (tmp_path / "run.log").read_text()
    report = summary["iterations"][2]["judge_report"]["components"]  # per iteration, in the summary (and W&B)
    assert set(report) == {"preference", "expected_form", "nothing_extraneous", "length", "format"}
    assert sum(v["share"] for v in report.values()) == pytest.approx(1.0)
