import math
import random

import pytest

from srlm_exp.pairs.rules import (
    PairChoice,
    all_pairs,
    best_vs_random,
    best_vs_worst,
    length_control,
    summarize_drops,
)

NAN = math.nan
L4 = [10, 20, 30, 40]


def rng(seed=0):
    return random.Random(seed)


def check_invariants(choice, scores):
    for c, r in choice.pairs:
        assert c != r
        assert not math.isnan(scores[c]) and not math.isnan(scores[r])
        assert scores[c] > scores[r]
    assert (choice.dropped is None) == bool(choice.pairs)


# ---- best_vs_worst -----------------------------------------------------------------

def test_best_vs_worst_basic():
    assert best_vs_worst([3, 5, 1, 4], L4, rng()) == PairChoice([(1, 2)], None)


def test_best_vs_worst_nan_excluded():
    # the NaN would be the "worst" if it were treated as -1 (the public bug)
    scores = [3, NAN, 5, 4]
    ch = best_vs_worst(scores, L4, rng())
    assert ch.pairs == [(2, 0)]
    check_invariants(ch, scores)


def test_best_vs_worst_ties_and_too_few():
    assert best_vs_worst([4, 4, 4, NAN], L4, rng()) == PairChoice([], "tie")
    assert best_vs_worst([NAN, 4, NAN, NAN], L4, rng()) == PairChoice([], "fewer_than_2_scored")
    assert best_vs_worst([NAN] * 4, L4, rng()).dropped == "fewer_than_2_scored"
    assert best_vs_worst([], [], rng()).dropped == "fewer_than_2_scored"


def test_best_vs_worst_shared_max_uses_rng():
    scores = [5, 5, 1, 5]
    seen = {best_vs_worst(scores, L4, rng(s)).pairs[0] for s in range(50)}
    assert {c for c, _ in seen} == {0, 1, 3}
    assert {r for _, r in seen} == {2}


def test_length_mismatch_raises():
    with pytest.raises(ValueError):
        best_vs_worst([1, 2], [1], rng())


# ---- best_vs_random ----------------------------------------------------------------

def test_best_vs_random_only_lower_scores():
    scores = [5, 3, 5, 1, NAN]
    seen = set()
    for s in range(100):
        ch = best_vs_random(scores, [1] * 5, rng(s))
        check_invariants(ch, scores)
        seen.update(ch.pairs)
    assert seen == {(0, 1), (0, 3), (2, 1), (2, 3)}


def test_best_vs_random_drops():
    assert best_vs_random([2, 2], [1, 1], rng()).dropped == "tie"
    assert best_vs_random([2, NAN], [1, 1], rng()).dropped == "fewer_than_2_scored"


# ---- all_pairs ---------------------------------------------------------------------

def test_all_pairs_margin():
    scores = [5, 4, 2, NAN]
    assert sorted(all_pairs(scores, L4, rng()).pairs) == [(0, 1), (0, 2), (1, 2)]
    assert sorted(all_pairs(scores, L4, rng(), margin=2).pairs) == [(0, 2), (1, 2)]
    assert sorted(all_pairs(scores, L4, rng(), margin=3).pairs) == [(0, 2)]
    assert all_pairs(scores, L4, rng(), margin=4) == PairChoice([], "no_pair_over_margin")


def test_all_pairs_orders_chosen_first_and_handles_thirds():
    scores = [10 / 3, 13 / 3]  # averaged K=3 judgments: gap is 1 up to rounding
    assert all_pairs(scores, [1, 1], rng()).pairs == [(1, 0)]


def test_all_pairs_never_equal_scores_even_with_zero_margin():
    scores = [3, 3, 1]
    ch = all_pairs(scores, [1, 1, 1], rng(), margin=0)
    assert sorted(ch.pairs) == [(0, 2), (1, 2)]
    check_invariants(ch, scores)
    assert all_pairs([3, 3], [1, 1], rng(), margin=0).dropped == "tie"


# ---- length_control ----------------------------------------------------------------

def test_length_control_picks_shortest_good_and_longest_bad():
    # max 5, min 1, rho .4 -> chosen band >= 3.4, rejected band <= 2.6
    scores = [5, 4, 3, 2, 1]
    lengths = [500, 100, 50, 900, 200]
    ch = length_control(scores, lengths, rng())
    # shortest with score >= 3.4 is index 1 (len 100; index 2 is shorter but scores 3)
    # longest with score <= 2.6 is index 3 (len 900)
    assert ch == PairChoice([(1, 3)], None)
    check_invariants(ch, scores)


def test_length_control_rho_zero_is_best_vs_worst_by_length():
    scores = [5, 5, 1, 1]
    lengths = [300, 100, 50, 80]
    assert length_control(scores, lengths, rng(), rho=0).pairs == [(1, 3)]


def test_length_control_drops():
    assert length_control([3, 3, NAN], [1, 2, 3], rng()).dropped == "tie"
    assert length_control([3], [1], rng()).dropped == "fewer_than_2_scored"
    # rho = 1: every candidate is in both bands; the shortest (score 1) leaves nothing lower
    assert length_control([5, 1], [100, 10], rng(), rho=1).dropped == "no_length_control_pair"
    with pytest.raises(ValueError):
        length_control([5, 1], [1, 1], rng(), rho=1.5)


def test_length_control_nan_excluded():
    scores = [NAN, 5, 1, NAN]
    ch = length_control(scores, [1, 100, 10, 1000], rng())
    assert ch.pairs == [(1, 2)]


def test_length_control_equal_lengths_prefers_score():
    scores = [5, 4, 2, 1]
    ch = length_control(scores, [10, 10, 10, 10], rng(), rho=0.45)
    assert ch.pairs == [(0, 3)]


# ---- shared ------------------------------------------------------------------------

def test_reproducible_with_seeded_rng():
    r1, r2 = random.Random(123), random.Random(123)
    gen = random.Random(7)
    for _ in range(200):
        n = gen.randint(0, 6)
        scores = [gen.choice([NAN, 1, 2, 3, 4, 5, 3.5]) for _ in range(n)]
        lengths = [gen.randint(1, 50) for _ in range(n)]
        for rule in (best_vs_worst, best_vs_random, all_pairs, length_control):
            a, b = rule(scores, lengths, r1), rule(scores, lengths, r2)
            assert a == b
            check_invariants(a, scores)


def test_summarize_drops():
    choices = [
        best_vs_worst([1, 2], [1, 1], rng()),
        best_vs_worst([2, 2], [1, 1], rng()),
        best_vs_worst([2, 2], [1, 1], rng()),
        best_vs_worst([NAN, 2], [1, 1], rng()),
    ]
    assert summarize_drops(choices) == {"tie": 2, "fewer_than_2_scored": 1}
    assert summarize_drops([]) == {}
