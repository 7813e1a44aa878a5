import math

import pytest

from srlm_exp.evaluation.metrics import head_to_head, judge_metrics, pearson

NAN = math.nan
REF = [[5, 4, 2, 1], [3, 5, 1], [1, 2, 3, 4, 5]]


def test_perfect_judge():
    m = judge_metrics(REF, REF)
    for key in ("pairwise_acc", "exact_match", "spearman", "kendall", "five_best"):
        assert m[key] == pytest.approx(1.0), key
    assert m["n_prompts"] == 3
    assert m["n_pairs"] == 6 + 3 + 10


def test_perfect_judge_on_another_scale():
    # a judge only needs the order right (reference could be minus the human rank)
    ref = [[-r for r in range(4)] for _ in range(3)]
    judge = [[5, 4, 3, 2]] * 3
    m = judge_metrics(judge, ref)
    assert m["pairwise_acc"] == m["exact_match"] == m["spearman"] == pytest.approx(1.0)
    assert m["kendall"] == pytest.approx(1.0)
    assert m["five_best"] == 1.0


def test_reversed_judge():
    judge = [[-s for s in p] for p in REF]
    m = judge_metrics(judge, REF)
    assert m["pairwise_acc"] == 0.0
    assert m["exact_match"] == 0.0
    assert m["spearman"] == pytest.approx(-1.0)
    assert m["kendall"] == pytest.approx(-1.0)
    assert m["five_best"] is None  # judge never gave 5


def test_constant_judge():
    judge = [[4] * len(p) for p in REF]
    m = judge_metrics(judge, REF)
    assert m["pairwise_acc"] == 0.0  # judge ties count as wrong
    assert m["exact_match"] == 0.0
    assert m["spearman"] == 0.0
    assert m["kendall"] == 0.0
    assert m["five_best"] is None


def test_hand_example_with_judge_tie():
    ref = [[4, 3, 2, 1]]
    judge = [[3, 3, 1, 2]]
    # pairs (i<k): (0,1) judge tie; (0,2) (0,3) (1,2) (1,3) concordant; (2,3) discordant
    # tau-b = (4 - 1) / sqrt((6 - 1) * (6 - 0))
    m = judge_metrics(judge, ref)
    assert m["kendall"] == pytest.approx(3 / math.sqrt(30))
    # Spearman on average ranks: judge [3.5, 3.5, 1, 2], ref [4, 3, 2, 1]
    # deviations judge [1, 1, -1.5, -.5], ref [1.5, .5, -.5, -1.5]
    assert m["spearman"] == pytest.approx(3.5 / math.sqrt(4.5 * 5))
    assert m["pairwise_acc"] == pytest.approx(4 / 6)
    assert m["exact_match"] == 0.0


def test_reference_ties_are_not_pairs():
    # ref tie between responses 1 and 2: that pair is not scored, the judge order between
    # them is free; the other pairs are right
    m = judge_metrics([[5, 2, 3]], [[3, 1, 1]])
    assert m["n_pairs"] == 2
    assert m["pairwise_acc"] == 1.0
    assert m["exact_match"] == 1.0


def test_five_best_by_hand():
    ref = [[5, 4, 3], [2, 9, 1], [1, 2]]
    judge = [
        [5, 5, 1],  # two 5s: one is the ref top
        [5, 4, 3],  # one 5, not the ref top
        [3, 5],  # one 5, ref top
    ]
    assert judge_metrics(judge, ref)["five_best"] == pytest.approx(2 / 4)
    assert judge_metrics(judge, ref, top_score=10)["five_best"] is None
    # averaged scores: 4.67 is not a 5
    assert judge_metrics([[14 / 3, 1]], [[2, 1]])["five_best"] is None


def test_nans():
    ref = [[3, 2, 1], [3, 2, 1]]
    judge = [[NAN, 2, 1], [NAN, NAN, NAN]]
    m = judge_metrics(judge, ref)
    # prompt 1: pairs with the NaN are wrong, (1,2) right; prompt 2: all wrong
    assert m["pairwise_acc"] == pytest.approx(1 / 6)
    assert m["exact_match"] == 0.0
    # prompt 1: NaN ranked lowest -> judge ranks [1, 3, 2] vs ref [3, 2, 1]
    # Spearman = -0.5; Kendall: concordant (1,2), discordant (0,1), (0,2) -> -1/3
    # prompt 2: all NaN = constant judge -> 0
    assert m["spearman"] == pytest.approx(-0.25)
    assert m["kendall"] == pytest.approx(-1 / 6)


def test_nan_reference_responses_ignored_and_constant_reference_skipped():
    m = judge_metrics([[1, 2, 3], [1, 2]], [[3, NAN, 1], [4, 4]])
    assert m["n_pairs"] == 1
    assert m["pairwise_acc"] == 0.0
    assert m["spearman"] == pytest.approx(-1.0)  # only prompt 1 counts
    assert m["n_prompts"] == 2


def test_empty_and_mismatch():
    m = judge_metrics([], [])
    assert m["pairwise_acc"] is None and m["spearman"] is None
    assert m["n_prompts"] == 0
    with pytest.raises(ValueError):
        judge_metrics([[1, 2]], [[1, 2, 3]])
    with pytest.raises(ValueError):
        judge_metrics([[1, 2]], [])


def test_rank_correlations_keep_the_hand_written_values():
    """scipy computes them now (average ranks, tau-b); the values are those of the hand-written code it replaced,
    on prompts with failed parses (NaN: ranked lowest, tied with each other), ties, a constant judge (0) and a
    prompt whose correlations cancel to 0."""
    judge = [[5, NAN, 3, 3, 1], [2, 2, 2], [NAN, NAN, 4, 1], [4.5, 1, 3, 3, 5, NAN], [1, 2]]
    ref = [[3, 2, 2, 1, 0], [1, 2, 3], [2, 0, 1, 1], [4, 1, 2, 3, 4, 0], [2, 1]]
    per_prompt = [(0.5, 0.4444444444444444), (0.0, 0.0), (0.0, 0.0), (0.9705882352941176, 0.9285714285714286), (-1.0, -1.0)]
    for j, r, (s, k) in zip(judge, ref, per_prompt):
        m = judge_metrics([j], [r])
        assert (m["spearman"], m["kendall"]) == (pytest.approx(s, abs=1e-12), pytest.approx(k, abs=1e-12))
    m = judge_metrics(judge, ref)
    assert m == {"pairwise_acc": 0.40625, "exact_match": 0.0, "spearman": pytest.approx(0.09411764705882356, abs=1e-12),
                 "kendall": pytest.approx(0.0746031746031746, abs=1e-12), "five_best": 1.0, "n_prompts": 5, "n_pairs": 32}


def test_head_to_head():
    r = head_to_head([5, 4, 3, 2, NAN], [4, 4, 5, 1, 3])
    assert r == {"win": 0.5, "tie": 0.25, "loss": 0.25, "n": 4}
    empty = head_to_head([NAN], [1])
    assert empty["n"] == 0 and math.isnan(empty["win"])
    with pytest.raises(ValueError):
        head_to_head([1], [1, 2])


def test_pearson():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # hand: x [1,2,3,4], y [1,3,2,4] -> cov 4, var 5, 5 -> 0.8
    assert pearson([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert pearson([1, 2, NAN, 4], [1, 3, 100, 4]) == pytest.approx(pearson([1, 2, 4], [1, 3, 4]))
    assert pearson([1], [1]) is None
    assert pearson([1, NAN], [1, 2]) is None
    assert pearson([0.1, 0.1, 0.1], [1, 2, 3]) is None
    assert pearson([1, 2, 3], [7, 7, 7]) is None
