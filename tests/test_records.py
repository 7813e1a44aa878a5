"""Judged candidates and the path from a judge score to a pair, on hand numbers: one rule for a score
(the mean of valid judgments), one JSON codec, one ranking for DPO's pairs and the SFT ablation."""
from __future__ import annotations

import json
import math
import random

import pytest

from srlm_exp.judging.pairwise import PairwiseJudge
from srlm_exp.pairs.build import build_pairs, top_candidate
from srlm_exp.pairs.rules import all_pairs, best_vs_worst
from srlm_exp.records import CandidateJudgments, JudgedCandidate, PromptCandidates, mean_of_valid, merge_identical, parse_rate

NAN = math.nan


def cand(text: str, *scores: float, gt: float | None = None, graded: bool = True) -> JudgedCandidate:
    return JudgedCandidate(text, len(text.split()), CandidateJudgments([f"j{i}" for i in range(len(scores))], list(scores)),
                           graded=graded, gt_score=gt, gt_correct=None if gt is None else gt >= 3)


def test_score_is_the_mean_of_valid_judgments_and_missing_when_none():
    assert mean_of_valid([4.0, NAN, 2.0]) == 3.0
    assert math.isnan(mean_of_valid([NAN, NAN])) and math.isnan(mean_of_valid([]))
    assert cand("a", 5, NAN, 3).score == 4.0
    assert math.isnan(cand("a", NAN).score)
    assert parse_rate([CandidateJudgments(["x", "y"], [1.0, NAN]), CandidateJudgments(["z"], [NAN])]) == pytest.approx(1 / 3)


def test_a_judgment_keeps_one_score_per_text():
    with pytest.raises(ValueError, match="one score per text"):
        CandidateJudgments(["only one text"], [1.0, 2.0])


def test_json_codec_round_trips_and_writes_null_for_missing():
    row = PromptCandidates(3, "Add 2 and 3.", [cand("The answer is 5.", 5, NAN, gt=5), cand("six", NAN, NAN, gt=None)])
    data = row.to_json()
    text = json.dumps(data, allow_nan=False)  # no NaN reaches a file
    assert data["candidates"][0] == {"text": "The answer is 5.", "source": "policy", "length": 4, "judgments": ["j0", "j1"],
                                     "judgment_scores": [5, None], "score": 5.0, "gt_score": 5, "gt_correct": True}
    assert data["candidates"][1]["score"] is None and data["judge_parse_rate"] == 0.25
    back = PromptCandidates.from_json(json.loads(text))
    assert back.to_json() == data and math.isnan(back.candidates[1].score)
    ungraded = cand("x", 1, graded=False).to_json()
    assert "gt_score" not in ungraded and JudgedCandidate.from_json(ungraded).graded is False
    assert PromptCandidates(0, "q", [cand("x", 1, graded=False)]).to_json().get("family", "absent") == "absent"
    assert JudgedCandidate.from_json({**ungraded, "source": "/models/teacher"}).source == "/models/teacher"
    del ungraded["source"]  # candidates.jsonl written before sources were tagged: the policy's
    assert JudgedCandidate.from_json(ungraded).source == "policy"
    with_family = PromptCandidates(0, "q", [cand("x", 1, gt=5)], family="length").to_json()
    assert with_family["family"] == "length" and PromptCandidates.from_json(with_family).family == "length"


def test_identical_samples_are_merged_with_their_judgments_pooled():
    merged = merge_identical([cand("a", 4), cand("b", 2), cand("a", 1, NAN)])
    assert [m.text for m in merged] == ["a", "b"]
    assert merged[0].judgment.scores[:2] == [4, 1] and merged[0].score == 2.5


def test_build_pairs_on_hand_numbers():
    rows = [
        PromptCandidates(0, "p0", [cand("a", 5, gt=5), cand("b", 1, gt=1), cand("c", 3, gt=2)]),
        PromptCandidates(1, "p1", [cand("d", 4, gt=0), cand("e", 4, gt=5)]),      # a tie: no pair
        PromptCandidates(2, "p2", [cand("f", NAN, gt=None), cand("g", 2, gt=2)]),  # one scored: no pair
    ]
    pairs, stats = build_pairs(rows, best_vs_worst, random.Random(0))
    assert pairs == [{"prompt_id": 0, "instruction": "p0", "chosen": "a", "rejected": "b", "chosen_score": 5.0,
                      "rejected_score": 1.0, "chosen_length": 1, "rejected_length": 1}]
    assert stats["pairs"] == {"n": 1, "tie_rate": 1 / 3, "dropped": {"tie": 1, "fewer_than_2_scored": 1}, "prompts": 3}
    assert stats["generated"]["score_hist"] == {"1": 1, "2": 1, "3": 1, "4": 2, "5": 1}
    assert stats["generated"]["parse_rate"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert stats["generated"]["chosen_len"] == 1 and stats["generated"]["rejected_len"] == 1
    watch = stats["reward_watch"]  # self vs ground truth over the 6 scored, graded candidates
    assert watch["n"] == 6 and watch["self_mean"] == pytest.approx(19 / 6) and watch["gt_mean"] == pytest.approx(15 / 6)
    all_p, _ = build_pairs(rows, all_pairs, random.Random(0))
    assert [(p["chosen"], p["rejected"]) for p in all_p] == [("a", "b"), ("a", "c"), ("c", "b")]


def test_generation_verification_gap_on_hand_numbers():
    rows = [  # family "a": the judge picks the right one of two; family "b": it picks a wrong one of three
        PromptCandidates(0, "p0", [cand("x", 5, gt=5), cand("y", 1, gt=1)], family="a"),
        PromptCandidates(1, "p1", [cand("u", 2, gt=5), cand("v", 4, gt=1), cand("w", 3, gt=0)], family="b"),
        PromptCandidates(2, "p2", [cand("z", 3, gt=None)], family=None),  # the grader does not know it
    ]
    gv = build_pairs(rows, best_vs_worst, random.Random(0))[1]["gen_verif"]
    assert gv["gradable"] == pytest.approx(2 / 3) and gv["prompts"] == 2
    assert gv["sampled_exact"] == pytest.approx(2 / 5)
    assert gv["judge_pick_exact"] == 0.5 and gv["random_pick_exact"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert gv["best_pick_exact"] == 1.0  # each prompt has a right candidate for a perfect judge to pick
    assert gv["per_family"]["a"] == {"prompts": 1, "sampled_exact": 0.5, "judge_pick_exact": 1.0, "random_pick_exact": 0.5,
                                     "best_pick_exact": 1.0}
    assert gv["per_family"]["b"]["judge_pick_exact"] == 0.0 and gv["per_family"]["b"]["random_pick_exact"] == pytest.approx(1 / 3)


def test_no_reward_watch_without_ground_truth():
    rows = [PromptCandidates(0, "p", [cand("a", 5, graded=False), cand("b", 1, graded=False)])]
    assert "reward_watch" not in build_pairs(rows, best_vs_worst, random.Random(0))[1]


def test_the_sft_ablation_ranks_like_the_pairs():
    # "a" was sampled twice and judged 5 and 1: pooled it is 3, below "b" (4). The raw maximum (5) would
    # pick "a"; the ranking DPO's pairs come from picks "b", and so does the SFT ablation.
    row = PromptCandidates(0, "p", [cand("a", 5), cand("b", 4), cand("a", 1)])
    pairs, _ = build_pairs([row], best_vs_worst, random.Random(0))
    assert pairs[0]["chosen"] == "b" == top_candidate(row).text
    assert top_candidate(PromptCandidates(0, "p", [cand("a", NAN)])) is None


def test_pairwise_judgments_keep_texts_and_scores_aligned(monkeypatch):
    judge = PairwiseJudge("pairwise", "<INSTRUCTION_HERE> <RESPONSE_A_HERE> <RESPONSE_B_HERE>")
    # Three candidates, pairs (0,1) (0,2) (1,2); each pair judged with 0 first, then 1 first.
    verdicts = {("x", "y"): ("Better: A", "Better: B"),    # x won both orders
                ("x", "z"): ("Better: A", "Better: A"),    # each order picked the one shown first: a tie
                ("y", "z"): ("Better: B", "no verdict")}  # z won the one order that parsed
    monkeypatch.setattr(judge, "compare_texts", lambda model, tok, triples, batch_size, desc: [
        verdicts[(x, y)] for _, x, y in triples])
    (x, y, z), = judge.judge(None, None, ["q"], [["x", "y", "z"]])
    for j in (x, y, z):
        assert len(j.texts) == len(j.scores) == 4
    assert x.scores == [5.0, 5.0, 5.0, 0.0] and x.score == pytest.approx(3.75)
    assert y.scores[:3] == [0.0, 0.0, 0.0] and math.isnan(y.scores[3]) and y.score == 0.0
    assert z.scores[:3] == [0.0, 5.0, 5.0] and math.isnan(z.scores[3]) and z.score == pytest.approx(10 / 3)
    assert parse_rate([x, y, z]) == pytest.approx(10 / 12)


def test_a_judge_writes_and_reads_its_own_score_marker():
    from srlm_exp.judging.judge import Judge

    judge = Judge("mine", "<INSTRUCTION_HERE> <RESPONSE_HERE>", score_marker="Rating (1-5):", score_range=(1, 5))
    target = judge.target("Close, but wrong. Rating (1-5): 7", 7)
    assert target == "Close, but wrong. Rating (1-5): 5"  # the EFT target, clipped into the range
    assert judge.parse(target) == 5.0 and math.isnan(judge.parse("Close. Score: 4"))
