"""Rules that turn one prompt's scored candidates into (chosen, rejected) pairs.

All rules are pure functions of (scores, lengths, rng). NaN scores are missing
judgments and are removed before anything else: a failed parse must never become a
rejected response (SPEC §3). No rule ever emits a pair with equal scores or with
chosen == rejected.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

# Averaged judge scores (K=3) are thirds; compare thresholds with a little slack so
# 4.333.. - 3.333.. still clears a margin of 1.
_EPS = 1e-9

FEWER_THAN_2 = "fewer_than_2_scored"
TIE = "tie"
NO_PAIR_OVER_MARGIN = "no_pair_over_margin"
NO_LENGTH_CONTROL_PAIR = "no_length_control_pair"


@dataclass(frozen=True)
class PairChoice:
    """Pairs made for one prompt; `dropped` says why none were made (None if some were)."""

    pairs: list[tuple[int, int]]  # (chosen_index, rejected_index) into the candidate list
    dropped: str | None


def _valid(scores: Sequence[float], lengths: Sequence[int]) -> tuple[list[int], PairChoice | None]:
    """Indices with a real score, or an early PairChoice when no pair is possible."""
    if len(scores) != len(lengths):
        raise ValueError(f"{len(scores)} scores but {len(lengths)} lengths")
    idx = [i for i, s in enumerate(scores) if not math.isnan(s)]
    if len(idx) < 2:
        return idx, PairChoice([], FEWER_THAN_2)
    if max(scores[i] for i in idx) == min(scores[i] for i in idx):
        return idx, PairChoice([], TIE)
    return idx, None


def best_vs_worst(scores: Sequence[float], lengths: Sequence[int], rng: random.Random) -> PairChoice:
    """Paper (Yuan et al.): highest-scored vs lowest-scored candidate; ties dropped.

    When several candidates share the max (or min) score, one is picked with `rng`.
    """
    idx, early = _valid(scores, lengths)
    if early is not None:
        return early
    hi, lo = max(scores[i] for i in idx), min(scores[i] for i in idx)
    chosen = rng.choice([i for i in idx if scores[i] == hi])
    rejected = rng.choice([i for i in idx if scores[i] == lo])
    return PairChoice([(chosen, rejected)], None)


def best_vs_random(scores: Sequence[float], lengths: Sequence[int], rng: random.Random) -> PairChoice:
    """Zephyr (dDPO): highest-scored candidate vs a random other with a lower score."""
    idx, early = _valid(scores, lengths)
    if early is not None:
        return early
    hi = max(scores[i] for i in idx)
    chosen = rng.choice([i for i in idx if scores[i] == hi])
    rejected = rng.choice([i for i in idx if scores[i] < hi])
    return PairChoice([(chosen, rejected)], None)


def all_pairs(scores: Sequence[float], lengths: Sequence[int], rng: random.Random, margin: float = 1.0) -> PairChoice:
    """InstructGPT-style: every pair whose score gap is >= `margin` (higher score chosen).

    Pairs are returned in index order (deterministic; `rng` is unused) so a caller can
    keep one prompt's pairs together, as InstructGPT did to avoid overfitting.
    """
    idx, early = _valid(scores, lengths)
    if early is not None:
        return early
    pairs = []
    for a_pos, a in enumerate(idx):
        for b in idx[a_pos + 1:]:
            gap = scores[a] - scores[b]
            # gap != 0 keeps equal scores out even with margin <= 0
            if gap != 0 and abs(gap) >= margin - _EPS:
                pairs.append((a, b) if gap > 0 else (b, a))
    return PairChoice(pairs, None if pairs else NO_PAIR_OVER_MARGIN)


def length_control(scores: Sequence[float], lengths: Sequence[int], rng: random.Random, rho: float = 0.4) -> PairChoice:
    """Meta-Rewarding (Wu et al. 2024) length-controlled pair.

    chosen = SHORTEST candidate with score >= (1-rho)*max + rho*min; rejected = LONGEST
    candidate with score <= (1-rho)*min + rho*max and a score below the chosen one's
    (only binds when rho >= 0.5 makes the two bands overlap). Among equal lengths the
    better (chosen) / worse (rejected) score wins, then `rng`.
    """
    if not 0 <= rho <= 1:
        raise ValueError(f"rho must be in [0, 1], got {rho}")
    idx, early = _valid(scores, lengths)
    if early is not None:
        return early
    hi, lo = max(scores[i] for i in idx), min(scores[i] for i in idx)
    top = [i for i in idx if scores[i] >= (1 - rho) * hi + rho * lo - _EPS]
    c_key = min((lengths[i], -scores[i]) for i in top)
    chosen = rng.choice([i for i in top if (lengths[i], -scores[i]) == c_key])
    bottom = [i for i in idx if scores[i] <= (1 - rho) * lo + rho * hi + _EPS and scores[i] < scores[chosen]]
    if not bottom:
        return PairChoice([], NO_LENGTH_CONTROL_PAIR)
    r_key = max((lengths[i], -scores[i]) for i in bottom)
    rejected = rng.choice([i for i in bottom if (lengths[i], -scores[i]) == r_key])
    return PairChoice([(chosen, rejected)], None)


def summarize_drops(choices: list[PairChoice]) -> dict[str, int]:
    """Count prompts per drop reason (prompts that produced pairs are not counted)."""
    return dict(Counter(c.dropped for c in choices if c.dropped is not None))
