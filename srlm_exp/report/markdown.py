"""Compose ``report.md`` from the loaded jobs, the grid and the written plots."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from .aggregate import Grid
from .collect import Job, format_value, variant_settings
from .paired import LEVEL, N_RESAMPLES, PairedRow, paired_table, seed_order
from .tables import (IFEVAL_COLUMNS, MAIN_COLUMNS, META_JUDGE_COLUMNS, METRIC_GROUPS, H2H, gen_verif_family_table,
                     head_to_head_table, metric_table, oracle_gain_table, per_family_table)


def header_lines(root: Path, jobs: list[Job], problems: list[str], variants: list[str]) -> list[str]:
    """Job count, seeds per variant, statuses, unfinished jobs and skipped files."""
    statuses = Counter(j.status for j in jobs)
    lines = [f"Source: `{root}` — {len(jobs)} job(s), {len(variants)} variant(s); statuses: "
             + ", ".join(f"{s} {n}" for s, n in sorted(statuses.items())) + ".", ""]
    for v in variants:
        vj = sorted((j for j in jobs if j.variant == v), key=seed_order)
        seeds = ", ".join(format_value(j.seed) for j in vj)
        lines.append(f"- `{v}`: {len(vj)} job(s), seeds {seeds}"
                     + (" — one seed (n=1): no spread over seeds, no error bar" if len(vj) == 1 else ""))
    keys = list(dict.fromkeys(k for v in variants for k, _ in variant_settings(v)))
    lines += ["", f"Variants by: {', '.join(f'`{k}`' for k in keys)}" if keys else
              "Variants by: none (every job has the same settings)"]
    unfinished = [j for j in jobs if j.status != "finished"]
    if unfinished:
        lines += ["", f"**{len(unfinished)} of {len(jobs)} job(s) not finished** — their missing "
                  "iterations/metrics are left out of the means (see n):"]
        lines += [f"- `{j.rel}` ({j.status}, {len(j.iterations)} iteration(s))" for j in unfinished]
    if problems:
        lines += ["", f"**{len(problems)} file(s) skipped** (unreadable or invalid):"]
        lines += [f"- `{p}`" for p in problems]
    lines += ["", "Cells: mean ± sample std (n seeds) over seeds; a single seed shows just its value; "
              "`—` = no data (not run yet, or the metric is undefined)."]
    return lines


def paired_section(paired: list[PairedRow]) -> list[str]:
    """The paired-differences section of report.md."""
    out = ["", "## Paired differences of prompt-level accuracy (M(t) − M1 and M(t) − M0, same held-out prompts)", "",
           f"Accuracy: `correct` per held-out prompt (the world: exact; IFEval: prompt-level strict), from each "
           f"iteration's eval_responses.jsonl. Per seed, M(t)'s and the baseline's answers to one instruction "
           f"are paired; a variant pools its (seed, prompt) pairs. Interval: {LEVEL:.0%} paired bootstrap over "
           f"prompts within each seed ({N_RESAMPLES:,} resamples, fixed RNG seed); p: McNemar's exact test per "
           "seed. One seed: the interval covers prompt noise only, not seed-to-seed spread.", ""]
    out.append(paired_table(paired) if paired else "_No graded eval responses (`correct`) to pair._")
    return out


def render_report(root: Path, jobs: list[Job], problems: list[str], grid: Grid, h2h: list[H2H],
                  plots: dict[str, Path | None], plot_error: str | None = None,
                  paired: list[PairedRow] | None = None) -> str:
    """The full markdown text of report.md."""
    out = ["# Self-rewarding experiment report", ""]
    out += header_lines(root, jobs, problems, grid.variants)
    out += ["", "## Main table", "", metric_table(grid, MAIN_COLUMNS)]
    if paired is not None:
        out += paired_section(paired)
    for title, cols in METRIC_GROUPS.items():
        out += ["", f"## {title}", "", metric_table(grid, cols)]
    if "prompt_strict" in grid.keys_under("eval"):  # only grids with an IFEval-graded job (data=ifeval)
        out += ["", "## IFEval accuracies (eval: prompt- and instruction-level, strict and loose)", "",
                metric_table(grid, IFEVAL_COLUMNS)]
    if grid.keys_under("meta_judge"):  # only grids with a meta-judge run
        out += ["", "## Meta-judge (the judge pairs M(t) trained on; closer to truth: the chosen judgment's score "
                "nearer the grader's than the rejected's)", "", metric_table(grid, META_JUDGE_COLUMNS)]
    phases = grid.keys_under("peak_rss_gb")
    if phases:  # only grids with a job that recorded it (Linux hosts)
        out += ["", "## Peak resident memory per phase (GB, the job's process and its children; a nested phase "
                "is its own)", "", metric_table(grid, [(p, ("peak_rss_gb", p)) for p in phases])]
    fam = per_family_table(grid)
    out += ["", "## Per-family gt_score", "", fam or "_No per-family results._"]
    gains = oracle_gain_table(jobs, grid.variants)
    out += ["", "## Gain over M1, and the share of the oracle judge's gain recovered", "",
            gains or "_No job reached M2 yet._"]
    gv = gen_verif_family_table(grid)
    out += ["", "## Generation-verification gap per family (AIFT(M(t)))", "", gv or "_No graded AIFT data._"]
    out += ["", "## Head-to-head (win / tie / loss shares, mean over seeds)", ""]
    out.append(head_to_head_table(h2h) if h2h else "_No head-to-head results yet._")
    out += ["", "## Plots", ""]
    if plot_error:
        out.append(f"_Plots not written: {plot_error}_")
    for name, path in plots.items():
        # One paragraph per plot: adjacent image lines would render side by side.
        out += [f"![{name}]({path.name})" if path else f"_{name}: no data to plot._", ""]
    return "\n".join(out) + "\n"
