"""Cut-off answers (issue 39): every sampled text says whether it ended within its budget, and no trainer takes
a cut answer as a finished one; rejection-sampling fine-tuning (train=rft) trains on passing candidates only."""
from __future__ import annotations

import json
import math
import pickle
import random

import pytest

from conftest import run_job
from srlm_exp.artifacts import read_jsonl
from srlm_exp.chat import IGNORE_INDEX, chat_example, prompt_ids
from srlm_exp.checks import ConfigError
from srlm_exp.generation.candidates import CandidateSampler
from srlm_exp.inference.sampler import Completion, Sampling, ended, finished_share, sample
from srlm_exp.models.loading import load_model, load_tokenizer
from srlm_exp.pairs.build import accepted_candidates, build_pairs, training_target
from srlm_exp.pairs.rules import best_vs_worst
from srlm_exp.records import CandidateJudgments, CutOffRule, JudgedCandidate, PromptCandidates
from srlm_exp.training.stage import too_little_aift_data
from srlm_exp.world import random_model


def _cand(text: str, score: float, finished: bool | None) -> JudgedCandidate:
    return JudgedCandidate(text, len(text), CandidateJudgments([f"Score: {score}"], [score]), finished=finished)


def _row(rule: str | None, penalty: float = 0.0, *cands: JudgedCandidate) -> PromptCandidates:
    return PromptCandidates(0, "Say hi.", list(cands), None, None if rule is None else CutOffRule(rule, penalty))


def test_ended_reads_the_end_of_sequence_or_a_short_continuation():
    assert ended([5, 6, 2], eos_id=2, pad_id=0, budget=3)          # EOS within the budget
    assert not ended([5, 6, 7], eos_id=2, pad_id=0, budget=3)      # the budget ran out
    assert ended([5, 0, 0], eos_id=2, pad_id=0, budget=3)          # stopped early (a stop string), padded
    assert ended([5, 2, 2], eos_id=2, pad_id=2, budget=3)          # pad is EOS
    c = Completion("hi", False)
    assert c == "hi" and not c.finished and json.dumps(c) == '"hi"'
    back = pickle.loads(pickle.dumps(c))  # what crosses ranks keeps its flag
    assert back == "hi" and back.finished is False
    assert finished_share([Completion("a", True), Completion("b", False)]) == 0.5 and finished_share(["a"]) is None


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = random_model.save_random_model("llama", random_model.world_texts(), tmp_path_factory.mktemp("m") / "m",
                                         random_model.Shape(hidden=32, intermediate=64, layers=1, heads=2, kv_heads=2))
    tok = load_tokenizer(path)
    return load_model(path, tok).eval(), tok


def test_both_generation_paths_say_which_continuations_the_budget_cut(tiny):
    """Greedy, so both paths write the same tokens: the flags agree, and a continuation that is not finished
    holds the whole budget (`ended` is checked on both kinds of ending above)."""
    from srlm_exp.models import shared_prefix as sp
    model, tok = tiny
    prompts = [prompt_ids(tok, p) for p in ("Say hi.", "Count to three.", "Name a colour.", "Add 2 and 3.")]
    budget = 5
    results = {}
    for shared in (True, False):
        sp.use_shared_prefix(shared)
        try:
            results[shared] = [t for (t,) in sample(model, tok, prompts, Sampling(max_new_tokens=budget, temperature=0.0))]
        finally:
            sp.use_shared_prefix(True)
    assert [t.finished for t in results[True]] == [t.finished for t in results[False]]
    for t in results[True]:
        assert isinstance(t, Completion)
        if not t.finished:
            assert len(tok(t, add_special_tokens=False)["input_ids"]) >= budget - 2  # decoded text may merge tokens


def test_a_cut_off_response_is_not_taught_to_end(tiny):
    _, tok = tiny
    done = chat_example(tok, "Say hi.", "hi there", 256)
    cut = chat_example(tok, "Say hi.", "hi there", 256, ended=False)
    labelled = lambda e: [x for x in e.labels if x != IGNORE_INDEX]  # noqa: E731
    assert labelled(done)[-1] == tok.eos_token_id and tok.eos_token_id not in labelled(cut)
    assert labelled(done)[:-1] == labelled(cut)  # the same response tokens, less the end


def test_drop_keeps_cut_answers_out_of_pairs_and_sft_targets():
    cut, good, bad = _cand("long cut answer", 5, False), _cand("fine", 4, True), _cand("bad", 1, True)
    row = _row("drop", 0.0, cut, good, bad)
    pairs, stats = build_pairs([row], best_vs_worst, random.Random(0))
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("fine", "bad")]
    assert pairs[0]["chosen_finished"] is True and pairs[0]["rejected_finished"] is True
    assert stats["generated"]["cut_off_rate"] == pytest.approx(1 / 3) and stats["generated"]["cut_off_rule"] == "drop"
    assert training_target(row).text == "fine"
    assert [c.text for c in accepted_candidates(row, 4, 5)] == ["fine"]
    keep = _row("keep", 0.0, cut, good, bad)  # the old behaviour, for comparison
    assert build_pairs([keep], best_vs_worst, random.Random(0))[0][0]["chosen"] == "long cut answer"


def test_too_little_data_from_dropped_cut_offs_says_so(tmp_path):
    """When most candidates were cut off and dropped, the error names that cause and its fixes, not more prompts."""
    rows = [_row("drop", 0.0, _cand("cut one", 5, False), _cand("cut two", 1, False), _cand("fine", 3, True))]
    pairs, stats = build_pairs(rows, best_vs_worst, random.Random(0))
    assert pairs == [] and stats["generated"]["cut_off_rate"] == pytest.approx(2 / 3)
    (tmp_path / "stats.json").write_text(json.dumps(stats))
    message = str(too_little_aift_data(tmp_path, "iteration 2: 0 valid preference pairs", 1))
    assert "66.7% of the candidates ran out of their new-token budget" in message
    assert "callbacks.self_reward.max_new_tokens" in message and "cut_off=penalty or keep" in message
    stats["generated"]["cut_off_rule"] = "keep"  # kept cut-offs are not why data is short
    (tmp_path / "stats.json").write_text(json.dumps(stats))
    assert "new-token budget" not in str(too_little_aift_data(tmp_path, "iteration 2: 0 pairs", 1))


def test_penalty_lowers_a_cut_answer_and_never_chooses_it():
    cut, good, bad = _cand("long cut answer", 5, False), _cand("fine", 4.5, True), _cand("bad", 1, True)
    pairs, _ = build_pairs([_row("penalty", 1.0, cut, good, bad)], best_vs_worst, random.Random(0))
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("fine", "bad")]  # 5 - 1 < 4.5
    worse = _row("penalty", 5.0, _cand("cut", 3, False), _cand("fine", 4, True))
    pairs, _ = build_pairs([worse], best_vs_worst, random.Random(0))
    assert pairs[0]["rejected"] == "cut" and pairs[0]["rejected_finished"] is False  # a cut answer may be rejected
    only_cut = _row("penalty", 1.0, _cand("cut a", 5, False), _cand("cut b", 1, False))
    pairs, stats = build_pairs([only_cut], best_vs_worst, random.Random(0))
    assert pairs == [] and stats["pairs"]["dropped"]["chosen_cut_off"] == 1
    assert training_target(only_cut) is None


def test_the_rule_travels_with_the_row_through_candidates_jsonl():
    row = _row("penalty", 2.0, _cand("a", 5, False), _cand("b", 3, True), _cand("c", 1, None))
    back = PromptCandidates.from_json(json.loads(json.dumps(row.to_json())))
    assert back.cut_off == CutOffRule("penalty", 2.0)
    assert [c.finished for c in back.candidates] == [False, True, None]
    assert [c.score for c in back.for_training()] == [3.0, 3.0, 1.0]
    assert back.cut_off_rate == 0.5
    old = PromptCandidates.from_json({k: v for k, v in row.to_json().items() if k != "cut_off"})
    assert old.cut_off is None and len(old.for_training()) == 3  # files written before the rule: as they were


def test_rejection_sampling_takes_distinct_passing_candidates_best_first_up_to_the_limit():
    row = _row("drop", 0.0, _cand("x", 5, True), _cand("x", 5, True), _cand("y", 5, True), _cand("z", 5, True),
               _cand("w", 4, True), _cand("nan", math.nan, True))
    assert [c.text for c in accepted_candidates(row, 5, 2)] == ["x", "y"]
    assert [c.text for c in accepted_candidates(row, 4, 10)] == ["x", "y", "z", "w"]
    assert accepted_candidates(row, 6, 10) == []


@pytest.mark.parametrize("kw, key", [(dict(cut_off="trim"), "cut_off"), (dict(cut_off_penalty=-1), "cut_off_penalty")])
def test_cut_off_settings_are_checked(kw, key):
    with pytest.raises(ConfigError) as err:
        CandidateSampler(**kw)
    assert key in str(err.value)


def test_rft_trains_the_loop_on_the_checkers_passes(tmp_path):
    """train=rft with the checker as judge on the embedded default: M2 is trained on passing candidates only,
    and it moved."""
    out = tmp_path / "run"
    run_job(["debug=smoke", "logger=none", "judge=oracle", "train=rft", "loop.iterations=1", "train.min_examples=1",
             "train.min_score=1",  # the smoke M1 is never exactly right (5); 1 is partial credit
             f"hydra.run.dir={out}"], tmp_path / "run.log", timeout=600)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished"
    trained = summary["iterations"][2]["training"]
    rows = [PromptCandidates.from_json(r) for r in read_jsonl(out / "iteration_2" / "candidates.jsonl")]
    expected = sum(len(accepted_candidates(r, 1.0, 2)) for r in rows)
    assert trained["examples"] == expected > 0
    assert all(c.finished is not None for r in rows for c in r.candidates)
    m1 = load_model(out / "iteration_1" / "model", load_tokenizer(out / "iteration_1" / "model"))
    m2 = load_model(out / "iteration_2" / "model", load_tokenizer(out / "iteration_2" / "model"))
    moved = sum((a - b).pow(2).sum() for a, b in zip(m1.parameters(), m2.parameters())).sqrt()
    assert moved > 1e-3
