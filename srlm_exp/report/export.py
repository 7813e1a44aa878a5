"""``--csv PATH``: the report's tables as one CSV, a row per variant × model, for pandas or a spreadsheet.

Columns: the variant and each of its settings (one column per variant key), the model, how many seeds
the row is made of, then per metric its mean, sample std and n over seeds (the dotted summary path names
the metric), then the paired differences against M1 and M0 (mean, 95% interval, prompts, seeds). An
undefined value is an empty cell, never 0.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .aggregate import Grid, Stat
from .collect import variant_settings
from .paired import BASELINES, PairedRow
from .tables import IFEVAL_COLUMNS, MAIN_COLUMNS, META_JUDGE_COLUMNS, METRIC_GROUPS


def csv_metrics(grid: Grid) -> list[str]:
    """The dotted metric paths of every table in report.md, each once, in the report's order."""
    columns = [*MAIN_COLUMNS, *(c for cols in METRIC_GROUPS.values() for c in cols)]
    if "prompt_strict" in grid.keys_under("eval"):
        columns += IFEVAL_COLUMNS
    if grid.keys_under("meta_judge"):
        columns += META_JUDGE_COLUMNS
    columns += [(phase, f"peak_rss_gb.{phase}") for phase in grid.keys_under("peak_rss_gb")]
    paths: list[str] = []
    for _, path in columns:
        if path not in paths:
            paths.append(path)
    return paths


def _num(x: float | int | None) -> str:
    return "" if x is None else repr(x) if isinstance(x, float) else str(x)


def _stat_cells(s: Stat | None) -> list[str]:
    return ["", "", ""] if s is None else [_num(s.mean), _num(s.std), str(s.n)]


def csv_rows(grid: Grid, paired: list[PairedRow]) -> list[list[str]]:
    """Header and rows of the CSV."""
    keys: list[str] = []
    for v in grid.variants:
        keys += [k for k, _ in variant_settings(v) if k not in keys]
    metrics = csv_metrics(grid)
    by_row = {(p.variant, p.iteration): p for p in paired}
    header = ["variant", *keys, "model", "iteration", "seeds"]
    header += [f"{m}.{part}" for m in metrics for part in ("mean", "std", "n")]
    header += ["accuracy.mean", "accuracy.std", "accuracy.n"]
    for b in BASELINES:
        header += [f"vs_M{b}.{part}" for part in ("delta", "lo", "hi", "prompts", "seeds", "delta_std_over_seeds")]
    rows = [header]
    for row in grid.rows():
        settings = dict(variant_settings(row[0]))
        cells = [row[0], *(settings.get(k, "") for k in keys), grid.models[row], str(row[1]), str(len(grid.records[row]))]
        for m in metrics:
            cells += _stat_cells(grid.stat(row, m))
        p = by_row.get(row)
        cells += _stat_cells(p.accuracy if p else None)
        for b in BASELINES:
            c = p.vs.get(b) if p else None
            if c is None:
                cells += [""] * 6
            else:
                spread = c.over_seeds
                cells += [_num(c.mean), _num(c.lo), _num(c.hi), str(c.n_prompts), str(len(c.per_seed)),
                          _num(spread.std if spread else None)]
        rows.append(cells)
    return rows


def write_csv(path: Path, grid: Grid, paired: list[PairedRow]) -> Path:
    """Write the CSV (its folder is made); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(csv_rows(grid, paired))
    return path
