"""Judge-quality metrics (paper Table 4), head-to-head tallies and Pearson correlation; the rank correlations
are scipy's, with this project's rules for failed parses and a constant judge.

Scores are "higher is better" for both the judge and the reference (pass e.g. minus
the human rank as the reference score). NaN judge scores are failed parses: they count
against the judge, never as a number.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats


def _rank_corrs(j: np.ndarray, r: np.ndarray) -> tuple[float, float]:
    """(Spearman, Kendall tau-b) of judge vs reference for one prompt, on average ranks (scipy's): a NaN judge
    score (a failed parse) ranks below every number, ties with other NaNs; a constant judge gets 0 for both,
    where scipy has no value (it ranks nothing, so it is no better than chance). The caller skips prompts whose
    reference is constant."""
    j = np.where(np.isnan(j), -np.inf, j)
    if np.all(j == j[0]):
        return 0.0, 0.0
    return float(stats.spearmanr(j, r).statistic), float(stats.kendalltau(j, r, variant="b").statistic)


def judge_metrics(
    judge_scores: Sequence[Sequence[float]], ref_scores: Sequence[Sequence[float]], top_score: float = 5
) -> dict:
    """Judge quality against reference rankings, one list of responses per prompt.

    Keys: pairwise_acc (pooled over all differently-ranked reference pairs; a judge tie
    or NaN counts as wrong), exact_match (share of prompts with >= 1 such pair whose
    pairs are all ordered correctly), spearman / kendall (tau-b; per prompt, average
    ranks, NaN judge scores ranked lowest, constant judge -> 0; averaged over prompts
    whose reference is not constant), five_best (of responses judged >= top_score, the
    share that are a reference-top response of their prompt; None if none judged so),
    n_prompts, n_pairs. (The parse rate counts individual judgments: records.py.) Undefined averages
    are None. Responses with a NaN reference score are ignored (no ground truth).
    """
    if len(judge_scores) != len(ref_scores):
        raise ValueError(f"{len(judge_scores)} judged prompts but {len(ref_scores)} reference prompts")
    n_pairs = n_correct = 0
    exact, spear, kend = [], [], []
    n_top = n_top_hits = 0
    for js, rs in zip(judge_scores, ref_scores):
        j, r = np.asarray(js, dtype=float), np.asarray(rs, dtype=float)
        if j.shape != r.shape:
            raise ValueError(f"prompt has {j.size} judge scores but {r.size} reference scores")
        keep = ~np.isnan(r)
        j, r = j[keep], r[keep]
        if r.size == 0:
            continue
        judged_top = j >= top_score  # NaN compares False
        n_top += int(judged_top.sum())
        n_top_hits += int((judged_top & (r == r.max())).sum())
        iu = np.triu_indices(r.size, 1)
        sr = np.sign(r[:, None] - r[None, :])[iu]
        sj = np.sign(j[:, None] - j[None, :])[iu]  # NaN stays NaN, never equals +-1
        ordered = sr != 0
        if not ordered.any():
            continue  # constant reference: nothing to get right, rank correlation undefined
        correct = sj[ordered] == sr[ordered]
        n_pairs += int(ordered.sum())
        n_correct += int(correct.sum())
        exact.append(bool(correct.all()))
        s, k = _rank_corrs(j, r)
        spear.append(s)
        kend.append(k)

    def mean(v):
        return float(np.mean(v)) if len(v) else None

    return {
        "pairwise_acc": n_correct / n_pairs if n_pairs else None,
        "exact_match": mean(exact),
        "spearman": mean(spear),
        "kendall": mean(kend),
        "five_best": n_top_hits / n_top if n_top else None,
        "n_prompts": len(judge_scores),
        "n_pairs": n_pairs,
    }


def head_to_head(scores_a: Sequence[float], scores_b: Sequence[float]) -> dict:
    """Fractions of prompts where a > b ("win"), a == b ("tie"), a < b ("loss").

    Prompts where either score is NaN (no verdict) are left out; "n" counts the rest.
    With n == 0 the fractions are NaN.
    """
    if len(scores_a) != len(scores_b):
        raise ValueError(f"{len(scores_a)} vs {len(scores_b)} scores")
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b, n = a[ok], b[ok], int(ok.sum())
    frac = (lambda m: float(m.sum()) / n) if n else (lambda m: math.nan)
    return {"win": frac(a > b), "tie": frac(a == b), "loss": frac(a < b), "n": n}


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson correlation over pairs without NaN; None if < 2 points or zero variance."""
    if len(x) != len(y):
        raise ValueError(f"{len(x)} vs {len(y)} values")
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = ~(np.isnan(xa) | np.isnan(ya))
    xa, ya = xa[ok], ya[ok]
    # exact constancy check: x - x.mean() of a constant float can leave 1e-17 residue
    if xa.size < 2 or np.all(xa == xa[0]) or np.all(ya == ya[0]):
        return None
    dx, dy = xa - xa.mean(), ya - ya.mean()
    return float((dx * dy).sum() / math.sqrt((dx**2).sum() * (dy**2).sum()))
