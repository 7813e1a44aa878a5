"""``srlm-report DIR [--out OUT] [--by KEY ...] [--csv PATH]``: tables and plots from every summary.json
under DIR."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .aggregate import Grid
from .collect import VariantKeyError, assign_variants, find_summaries, load_jobs, short_names, variant_keys
from .export import write_csv
from .markdown import render_report
from .paired import paired_rows, paired_table
from .plots import plot_head_to_head, plot_metrics_over_iterations
from .tables import MAIN_COLUMNS, head_to_head_rows, metric_table

EXIT_NO_DATA = 2


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        prog="srlm-report",
        description="Aggregate the summary.json of every run/sweep job under DIR into report.md "
                    "(tables over models M0, M1, M2, ... with mean ± std over seeds) and PNG plots.")
    p.add_argument("dir", metavar="DIR", type=Path,
                   help="directory searched recursively, e.g. outputs/ or outputs/multirun/<date>/<time>")
    p.add_argument("--out", "-o", type=Path, default=None, help="where report.md and the plots go (default: DIR)")
    p.add_argument("--by", nargs="+", metavar="KEY", default=None,
                   help="the settings that define a variant, e.g. --by judge train (or judge,train; a config group "
                        "or a dotted key such as train.beta); jobs that agree on them are pooled as seeds. "
                        "Default: every setting whose value differs between the jobs, logging and launch "
                        "settings (logger, progress bars, hydra.*, the sweep's name) aside")
    p.add_argument("--csv", type=Path, default=None, metavar="PATH",
                   help="also write the tables as one CSV: a row per variant x model, mean/std/n per metric "
                        "and the paired differences")
    return p


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the report; returns the exit code (0 ok, 2 no usable summary.json)."""
    args = build_parser().parse_args(argv)
    root: Path = args.dir
    paths = find_summaries(root) if root.is_dir() else []
    if not paths:
        _err(f"error: no summary.json found under {root} — run `python run.py` or a sweep first")
        return EXIT_NO_DATA
    jobs, problems = load_jobs(paths, root)
    for p in problems:  # skipped, but never silently
        _err(f"warning: skipping {p}")
    if not jobs:
        _err(f"error: none of the {len(paths)} summary.json file(s) under {root} could be read")
        return EXIT_NO_DATA

    try:
        variants = assign_variants(jobs, args.by)
    except VariantKeyError as e:
        _err(f"error: {e}")
        return EXIT_NO_DATA
    for v in variants if args.by else []:  # pooling what --by leaves out is the user's call, but a visible one
        mixed = variant_keys([j for j in jobs if j.variant == v])
        if mixed:
            _err(f"note: --by pools jobs of {v} that differ in {', '.join(mixed)}")
    grid = Grid.build(jobs, variants)
    h2h = head_to_head_rows(grid)
    paired = paired_rows(jobs, variants)
    seeds = {v: sum(j.variant == v for j in jobs) for v in variants}
    legend_title, names = short_names(variants)
    out: Path = args.out or root
    out.mkdir(parents=True, exist_ok=True)

    plots: dict = {}
    plot_error = None
    try:
        plots["metrics over iterations"] = plot_metrics_over_iterations(
            grid, out / "metrics_over_iterations.png", names=names, seeds=seeds, legend_title=legend_title)
        plots["head-to-head"] = plot_head_to_head(h2h, variants, out / "head_to_head.png", names=names)
    except ImportError as e:  # matplotlib is a dependency, but the tables are still worth having
        plot_error = f"matplotlib unavailable ({e})"
        _err(f"warning: {plot_error}; writing tables only")

    report = out / "report.md"
    report.write_text(render_report(root, jobs, problems, grid, h2h, plots, plot_error, paired=paired),
                      encoding="utf-8")
    table_csv = write_csv(args.csv, grid, paired) if args.csv else None
    unfinished = sum(j.status != "finished" for j in jobs)
    print(f"{len(jobs)} job(s), {len(variants)} variant(s)" + (f", {unfinished} not finished" if unfinished else ""))
    single = [v for v in variants if seeds[v] == 1]
    if single and len(jobs) > 1:
        print(f"one seed (n=1, no spread over seeds): {', '.join(single)}")
    print(metric_table(grid, MAIN_COLUMNS))
    if paired:
        print("\npaired differences of prompt-level accuracy (95% paired bootstrap over prompts; McNemar p per seed):")
        print(paired_table(paired))
    print(f"\nreport: {report}" + (f"\ncsv: {table_csv}" if table_csv else ""))
    return 0
