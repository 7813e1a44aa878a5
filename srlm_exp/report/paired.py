"""Paired differences of prompt-level accuracy between the models of one job: M(t) − M1 and M(t) − M0 on
the same held-out prompts, with a 95% interval.

The unit is (seed, prompt): within a job, M(t)'s and M1's answers to one held-out instruction are paired
(matched by its text); a variant pools the pairs of all its jobs. Pairing removes what a prompt's difficulty
and a seed's test set add to both models alike, which a mean ± std of per-seed accuracies keeps.

- The interval is a paired bootstrap over prompts, stratified by seed: each resample draws every job's own
  number of prompts from that job's deltas, so a seed never lends prompts to another and the seed mix stays
  fixed. A fixed RNG seed makes every interval reproducible.
- McNemar's exact test per job: of the prompts where the two models disagree, is M(t) right more or less
  often than chance (binomial, p = 1/2)?

Accuracy is ``correct`` per prompt of ``iteration_t/eval_responses.jsonl`` (the world's exact answer,
IFEval's prompt-level strict); a job whose rows carry no ``correct`` (no grader) has no paired rows.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from .aggregate import Stat, format_stat, summarize
from .collect import Job, format_value
from .tables import markdown_table

N_RESAMPLES = 10_000
RNG_SEED = 0
LEVEL = 0.95
BASELINES = (1, 0)  # M(t) − M1, then M(t) − M0


def read_correct(path: Path) -> list[tuple[str, bool]] | None:
    """(instruction, correct) per graded row of an eval_responses.jsonl; None when the file is absent or
    unreadable, [] when no row is graded. Rows without a bool ``correct`` are left out."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    rows = []
    for line in lines:
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue  # a damaged row is one prompt less, not a lost job
        if isinstance(r, dict) and isinstance(r.get("instruction"), str) and isinstance(r.get("correct"), bool):
            rows.append((r["instruction"], r["correct"]))
    return rows


def _keyed(rows: list[tuple[str, bool]]) -> dict[tuple[str, int], bool]:
    # An instruction that occurs twice in the eval set is two prompts: its k-th occurrence in one model's
    # answers pairs with its k-th occurrence in the other's.
    seen: Counter = Counter()
    out = {}
    for text, ok in rows:
        out[(text, seen[text])] = ok
        seen[text] += 1
    return out


def match_prompts(base: list[tuple[str, bool]], new: list[tuple[str, bool]]) -> tuple[np.ndarray, np.ndarray]:
    """(base correct, new correct) as aligned 0/1 arrays over the prompts both models answered, matched by
    instruction text, in `new`'s order."""
    b, n = _keyed(base), _keyed(new)
    common = [k for k in n if k in b]
    return (np.array([b[k] for k in common], dtype=float), np.array([n[k] for k in common], dtype=float))


def mcnemar_exact(base: np.ndarray, new: np.ndarray) -> float:
    """Two-sided exact McNemar p-value of paired 0/1 outcomes: the prompts only `new` gets right against
    those only `base` gets right, binomial with p = 1/2; 1.0 when the models never disagree."""
    base, new = np.asarray(base, dtype=bool), np.asarray(new, dtype=bool)
    wins, losses = int((new & ~base).sum()), int((base & ~new).sum())
    if wins + losses == 0:
        return 1.0
    return float(binomtest(wins, wins + losses, 0.5).pvalue)


def paired_bootstrap(deltas: list[np.ndarray], n_resamples: int = N_RESAMPLES, seed: int = RNG_SEED,
                     level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean delta over all (seed, prompt) units and its percentile interval, resampling
    prompts with replacement within each seed's array. Raises ValueError when there is no delta at all."""
    groups = [np.asarray(d, dtype=float) for d in deltas if len(d)]
    total = sum(len(d) for d in groups)
    if not total:
        raise ValueError("no paired prompts to bootstrap")
    rng = np.random.default_rng(seed)
    sums = np.zeros(n_resamples)
    for d in groups:
        # Resampling n prompts is drawing counts of each distinct delta from a multinomial with the
        # observed shares: the same distribution in O(resamples x distinct values), and 0/1 accuracies
        # give at most three distinct deltas.
        values, counts = np.unique(d, return_counts=True)
        draws = rng.multinomial(len(d), counts / len(d), size=n_resamples)
        sums += draws @ values
    means = sums / total
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(sum(d.sum() for d in groups) / total), float(lo), float(hi)


@dataclass
class SeedDelta:
    """One job's paired comparison of M(t) against a baseline model."""

    seed: str
    n: int           # prompts both models answered
    delta: float     # mean of new − base over them
    p: float         # McNemar's exact p-value


@dataclass
class Paired:
    """A variant's pooled comparison of M(t) against one baseline (M1 or M0)."""

    baseline: str
    per_seed: list[SeedDelta]
    mean: float
    lo: float
    hi: float

    @property
    def n_prompts(self) -> int:
        return sum(s.n for s in self.per_seed)

    @property
    def over_seeds(self) -> Stat | None:
        """Mean ± std over seeds of the per-seed deltas (the unpaired-across-seeds view)."""
        return summarize(s.delta for s in self.per_seed)


@dataclass
class PairedRow:
    """One variant × model: its accuracy over seeds and its paired differences against M1 and M0."""

    variant: str
    iteration: int
    model: str
    accuracy: Stat | None                       # per-seed accuracy of M(t) from its responses
    vs: dict[int, Paired] = field(default_factory=dict)  # baseline iteration -> comparison

    @property
    def n_seeds(self) -> int:
        return max((len(p.per_seed) for p in self.vs.values()), default=0)


def seed_order(job: Job) -> tuple:
    # Per-seed cells read in seed order (1, 2, 10), whatever directories the jobs were found in.
    text = format_value(job.seed)
    return (0, int(text), "") if text.lstrip("-").isdigit() else (1, 0, text)


def _seed_labels(jobs: list[Job]) -> list[str]:
    # Seeds label the per-seed deltas; two jobs with one seed (a rerun) are told apart by their directory.
    labels = [format_value(j.seed) for j in jobs]
    return [lab if labels.count(lab) == 1 else f"{lab} ({j.rel})" for lab, j in zip(labels, jobs)]


def compare(pairs: list[tuple[str, np.ndarray, np.ndarray]], baseline: str,
            n_resamples: int = N_RESAMPLES) -> Paired | None:
    """Pool (seed label, base correct, new correct) per job into one Paired; None when no prompt pairs."""
    per_seed = [SeedDelta(s, len(b), float(np.mean(n - b)), mcnemar_exact(b, n)) for s, b, n in pairs if len(b)]
    if not per_seed:
        return None
    mean, lo, hi = paired_bootstrap([n - b for _, b, n in pairs if len(b)], n_resamples)
    return Paired(baseline, per_seed, mean, lo, hi)


def paired_rows(jobs: list[Job], variants: list[str], n_resamples: int = N_RESAMPLES) -> list[PairedRow]:
    """Per variant and model M(t), t >= 1: the paired differences against M1 (t >= 2) and M0, from every
    job's eval_responses.jsonl; variants and models without graded responses are left out."""
    out = []
    for v in variants:
        vjobs = sorted((j for j in jobs if j.variant == v), key=seed_order)
        labels = _seed_labels(vjobs)
        # iteration -> [(seed label, rows)] of the jobs that have graded responses for it
        answers: dict[int, list[tuple[str, list[tuple[str, bool]]]]] = {}
        models: dict[int, str] = {}
        for job, label in zip(vjobs, labels):
            for it in job.iterations:
                rows = read_correct(job.eval_responses(it["iteration"]))
                if rows:
                    answers.setdefault(it["iteration"], []).append((label, rows))
                    models.setdefault(it["iteration"], it["model"])
        for t in sorted(answers):
            if t < 1:
                continue
            accs = [statistics.fmean(ok for _, ok in rows) for _, rows in answers[t]]
            row = PairedRow(v, t, models[t], summarize(accs))
            for base in BASELINES:
                if base >= t or base not in answers:
                    continue
                base_rows = dict(answers[base])
                pairs = [(s, *match_prompts(base_rows[s], rows)) for s, rows in answers[t] if s in base_rows]
                cmp = compare(pairs, models.get(base, f"M{base}"), n_resamples)
                if cmp is not None:
                    row.vs[base] = cmp
            if row.vs:
                out.append(row)
    return out


def _signed(x: float) -> str:
    return f"{x:+.3f}"


def format_interval(p: Paired | None) -> str:
    """``+0.125 [+0.031, +0.219]``; — when there is no comparison."""
    return "—" if p is None else f"{_signed(p.mean)} [{_signed(p.lo)}, {_signed(p.hi)}]"


def format_per_seed(p: Paired | None) -> str:
    """``1: +0.125 (p=0.22); 2: -0.031 (p=1)``: each seed's delta and McNemar's exact p."""
    if p is None:
        return "—"
    return "; ".join(f"{s.seed}: {_signed(s.delta)} (p={s.p:.2g})" for s in p.per_seed)


PAIRED_HEADER = ["variant", "model", "seeds", "prompts", "accuracy (mean ± std over seeds)", "M(t) − M1 [95% CI]",
                 "M(t) − M0 [95% CI]", "per seed: M(t) − M1 (McNemar p)", "per seed: M(t) − M0 (McNemar p)"]


def _prompts(row: PairedRow) -> str:
    ns = [row.vs[b].n_prompts for b in BASELINES if b in row.vs]
    return str(ns[0]) if len(set(ns)) == 1 else " / ".join(map(str, ns))


def paired_table_rows(rows: list[PairedRow]) -> list[list[str]]:
    """The cells of the paired table, one list per variant × model."""
    return [[r.variant, r.model, f"{r.n_seeds} (one seed)" if r.n_seeds == 1 else str(r.n_seeds), _prompts(r),
             format_stat(r.accuracy), format_interval(r.vs.get(1)), format_interval(r.vs.get(0)),
             format_per_seed(r.vs.get(1)), format_per_seed(r.vs.get(0))] for r in rows]


def paired_table(rows: list[PairedRow]) -> str:
    """Markdown table of the paired differences (PAIRED_HEADER)."""
    return markdown_table(PAIRED_HEADER, paired_table_rows(rows))
