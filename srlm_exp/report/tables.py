"""Markdown tables: rows are variant × model, cells ``mean ± std (n)`` over seeds."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .aggregate import Grid, Row, format_stat, get_path, summarize
from .collect import format_value

# The compact table printed to the terminal and shown first in report.md.
MAIN_COLUMNS: list[tuple[str, str]] = [
    ("gt_score", "eval.gt_score"),
    ("gt_exact", "eval.gt_exact"),
    ("pairwise_acc", "judge.pairwise_acc"),
    ("spearman", "judge.spearman"),
    ("win vs M1", "head_to_head.vs_M1.win"),
    ("pairs.n", "pairs.n"),
]
# Every main metric, one wide table per group (SPEC §1.3 reads policy quality, judge
# quality (Table 4) and the self-rewarding loop's own health separately).
METRIC_GROUPS: dict[str, list[tuple[str, str]]] = {
    "Policy quality (eval)": [
        ("gt_score", "eval.gt_score"), ("gt_exact", "eval.gt_exact"), ("mean_length", "eval.mean_length")],
    "Judge quality": [
        ("pairwise_acc", "judge.pairwise_acc"), ("spearman", "judge.spearman"), ("kendall", "judge.kendall"),
        ("exact_match", "judge.exact_match"), ("five_best", "judge.five_best"), ("parse_rate", "judge.parse_rate"),
        ("states answer", "judge.states_answer"), ("quotes response", "judge.quotes_response")],
    "Self-rewarding loop": [
        ("win vs M1", "head_to_head.vs_M1.win"), ("win vs prev", "head_to_head.vs_prev.win"),
        ("pairs.n", "pairs.n"), ("pairs.tie_rate", "pairs.tie_rate"),
        ("generated.parse_rate", "generated.parse_rate"), ("reward_watch.corr", "reward_watch.corr")],
    # What each model generated and judged (AIFT(M(t))): can it tell right from wrong better than chance?
    "Generation-verification gap (AIFT(M(t)), graded prompts)": [
        ("greedy exact", "eval.gt_exact"), ("sampled exact (eval)", "eval.sampled.gt_exact"),
        ("gradable prompts", "aift.gradable"), ("sampled exact", "aift.sampled_exact"),
        ("judge pick exact", "aift.judge_pick_exact"), ("random pick exact", "aift.random_pick_exact"),
        ("best pick exact", "aift.best_pick_exact"),
        ("self vs gt corr", "aift.self_vs_gt_corr"), ("pairs made", "aift.pairs")],
}
# IFEval's own measures (data=ifeval; shown where a job has them): prompt-level = every constraint of a prompt
# passes (strict = gt_exact), instruction-level = the share of all constraints that pass; loose forgives a stray
# first or last line and markdown asterisks.
IFEVAL_COLUMNS: list[tuple[str, str]] = [
    ("prompt strict", "eval.prompt_strict"), ("prompt loose", "eval.prompt_loose"),
    ("instruction strict", "eval.instruction_strict"), ("instruction loose", "eval.instruction_loose")]
# Meta-Rewarding (meta_judge=...): the judge pairs M(t) trained on, which M(t-1) made by judging its judgments.
META_JUDGE_COLUMNS: list[tuple[str, str]] = [
    ("judge pairs", "meta_judge.pairs"), ("verdicts parsed", "meta_judge.parse_rate"),
    ("first-position wins", "meta_judge.first_position_wins"),
    ("chosen closer to truth", "meta_judge.chosen_closer_to_truth"),
    ("chosen score", "meta_judge.chosen_score"), ("rejected score", "meta_judge.rejected_score")]
H2H_SOURCES = ("head_to_head", "external_judge")


def _cell(text: object) -> str:
    # A "|" inside a cell (e.g. in an override value) would split the column.
    return str(text).replace("|", r"\|").replace("\n", " ")


def markdown_table(header: list[str], rows: Sequence[Sequence[object]]) -> str:
    """GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(map(_cell, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(_cell, r)) + " |" for r in rows]
    return "\n".join(lines)


def metric_table(grid: Grid, columns: Sequence[tuple[str, str | Iterable[str]]]) -> str:
    """One row per variant × model, one column per (title, dotted metric path)."""
    rows = [[v, grid.models[(v, i)], *(format_stat(grid.stat((v, i), p)) for _, p in columns)]
            for v, i in grid.rows()]
    return markdown_table(["variant", "model", *(t for t, _ in columns)], rows)


def per_family_table(grid: Grid, metric: str = "gt_score") -> str | None:
    """``eval.per_family.<fam>.<metric>``, families as columns; None when no job has families."""
    fams = sorted(grid.keys_under("eval.per_family"))
    if not fams:
        return None
    return metric_table(grid, [(f, ("eval", "per_family", f, metric)) for f in fams])


@dataclass
class H2H:
    """Win/tie/loss means over seeds of one model against one opponent."""

    variant: str
    iteration: int
    model: str
    source: str          # "head_to_head" or "external_judge"
    opponent: str        # resolved name, e.g. "M1" or "M1 (prev)"
    win: float | None
    tie: float | None
    loss: float | None
    n: int               # seeds that contributed

    @property
    def label(self) -> str:
        return f"{self.model} vs {self.opponent}"


def _comparison_order(keys: list[str]) -> list[str]:
    first = [k for k in ("vs_M1", "vs_prev") if k in keys]
    return first + sorted(k for k in keys if k not in first)


def _opponent(grid: Grid, row: Row, key: str) -> str:
    if key == "vs_prev":
        prev = grid.models.get((row[0], row[1] - 1))
        return f"{prev} (prev)" if prev else "prev"
    return key[3:] if key.startswith("vs_") else key


def head_to_head_rows(grid: Grid) -> list[H2H]:
    """All comparisons found in ``head_to_head`` / ``external_judge``, per variant and model."""
    out = []
    for source in H2H_SOURCES:
        keys = _comparison_order(grid.keys_under(source))
        for row in grid.rows():
            for key in keys:
                stats = {o: grid.stat(row, (source, key, o)) for o in ("win", "tie", "loss")}
                if all(s is None for s in stats.values()):
                    continue
                win, tie, loss = (s.mean if s else None for s in stats.values())
                out.append(H2H(row[0], row[1], grid.models[row], source, _opponent(grid, row, key), win, tie, loss,
                               n=max(s.n for s in stats.values() if s)))
    # Read per variant and model: self-judged comparisons first, then the external judge's.
    order = {v: k for k, v in enumerate(grid.variants)}
    return sorted(out, key=lambda h: (order.get(h.variant, len(order)), h.iteration))


def head_to_head_table(rows: list[H2H]) -> str:
    """Win/tie/loss table (shares, mean over seeds)."""
    def f(x: float | None) -> str:
        return "—" if x is None else f"{x:.3f}"
    return markdown_table(["variant", "model", "vs", "judged by", "win", "tie", "loss", "seeds"],
                          [[h.variant, h.model, h.opponent, h.source, f(h.win), f(h.tie), f(h.loss), h.n]
                           for h in rows])


def gen_verif_family_table(grid: Grid) -> str:
    """Per task family and model: greedy exact of M(t), and on its AIFT candidates the sampled exact
    rate and how often the judge's pick is right against a random candidate."""
    families = grid.keys_under("aift.per_family")
    rows = []
    for row in grid.rows():
        for f in families:
            cells = [grid.stat(row, ("eval", "per_family", f, "gt_exact"))] + [
                grid.stat(row, ("aift", "per_family", f, k))
                for k in ("sampled_exact", "judge_pick_exact", "random_pick_exact", "best_pick_exact")]
            if all(c is None for c in cells[1:]):
                continue
            rows.append([row[0], grid.models[row], f, *map(format_stat, cells)])
    if not rows:
        return ""
    return markdown_table(["variant", "model", "family", "greedy exact", "sampled exact", "judge pick exact",
                           "random pick exact", "best pick exact"], rows)


def oracle_gain_table(jobs, variants: list[str], metric: str = "eval.gt_score") -> str:
    """Each variant's M1 -> last-model gain in `metric` (mean ± std over seeds) and, next to a variant
    with judge=oracle and otherwise the same settings, the share of the oracle's gain it recovers."""
    def gain(job):
        its = {it["iteration"]: it for it in job.iterations}
        if 1 not in its or len(its) < 3:
            return None
        first, last = get_path(its[1], metric), get_path(its[max(its)], metric)
        return None if first is None or last is None else last - first

    by_variant = {v: [g for j in jobs if j.variant == v and (g := gain(j)) is not None] for v in variants}
    config = {j.variant: j.config for j in jobs}  # the jobs of one variant share its settings
    oracle = {v for v in variants if format_value(config[v].get("judge")) == "oracle"}

    def without_judge(v):
        return {k: format_value(x) for k, x in config[v].items() if k != "judge"}

    def matching_oracle(v):
        """The oracle variant with v's other settings; the only oracle variant when none matches exactly."""
        found = [o for o in oracle if without_judge(o) == without_judge(v)]
        return found[0] if len(found) == 1 else (next(iter(oracle)) if len(oracle) == 1 else None)

    rows = []
    for v in variants:
        stat = summarize(by_variant[v])
        if stat is None:
            continue
        share = "—"
        o = matching_oracle(v) if oracle and v not in oracle else None
        if o is not None:
            ref = summarize(by_variant[o])
            if ref is not None and ref.mean > 0:
                share = f"{stat.mean / ref.mean:.2f}"
        rows.append([v, format_stat(stat), "(oracle)" if v in oracle else share])
    if not rows:
        return ""
    return markdown_table(["variant", f"M1 -> last {metric.split('.')[-1]} gain", "share of the oracle's gain"], rows)
