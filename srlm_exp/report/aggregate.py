"""Group iteration records by (variant, iteration) across seeds and summarize metrics.

Every metric is looked up by a dotted path into an iteration record
(``eval.gt_score``, ``head_to_head.vs_M1.win``). Anything missing, null, non-numeric or
NaN is simply absent: partial jobs contribute to the cells they have, and ``n`` says
how many seeds a cell is made of.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable

from .collect import Job

Row = tuple[str, int]  # (variant label, iteration)


@dataclass(frozen=True)
class Stat:
    """Mean over seeds; ``std`` is the sample std, None when n < 2."""

    mean: float
    std: float | None
    n: int


def get_path(record: Any, path: str | Iterable[str]) -> Any:
    """``record[a][b][c]`` for ``path="a.b.c"`` (or a key sequence); None when any level is missing."""
    for key in path.split(".") if isinstance(path, str) else path:
        if not isinstance(record, dict):
            return None
        record = record.get(key)
    return record


def as_number(v: Any) -> float | None:
    """A finite float, or None (bools are flags, not metrics)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def summarize(values: Iterable[Any]) -> Stat | None:
    """Stat of the numeric values, None when there are none."""
    xs = [x for x in map(as_number, values) if x is not None]
    if not xs:
        return None
    return Stat(statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else None, len(xs))


@dataclass
class Grid:
    """Iteration records of all jobs, grouped by (variant, iteration)."""

    variants: list[str]
    records: dict[Row, list[dict]] = field(default_factory=dict)
    models: dict[Row, str] = field(default_factory=dict)

    @classmethod
    def build(cls, jobs: list[Job], variants: list[str]) -> "Grid":
        """Group the (variant-labelled) jobs' iterations."""
        grid = cls(list(variants))
        for job in jobs:
            for it in job.iterations:
                row = (job.variant, it["iteration"])
                grid.records.setdefault(row, []).append(it)
                grid.models.setdefault(row, it["model"])
        return grid

    def rows(self) -> list[Row]:
        """Variant-major, then iteration (M0, M1, M2, ...)."""
        order = {v: i for i, v in enumerate(self.variants)}
        return sorted(self.records, key=lambda r: (order.get(r[0], len(order)), r[1]))

    def iterations(self, variant: str) -> list[int]:
        """The iterations this variant has records for."""
        return [i for v, i in self.rows() if v == variant]

    def stat(self, row: Row, path: str | Iterable[str]) -> Stat | None:
        """Stat of one metric over the seeds that have it."""
        keys = path.split(".") if isinstance(path, str) else list(path)
        return summarize(get_path(r, keys) for r in self.records.get(row, []))

    def keys_under(self, path: str) -> list[str]:
        """Union of the dict keys found at `path` in any record (e.g. families, comparisons)."""
        seen: list[str] = []
        for recs in self.records.values():
            for r in recs:
                d = get_path(r, path)
                if isinstance(d, dict):
                    seen += [str(k) for k in d if str(k) not in seen]
        return seen


def _decimals(x: float) -> int:
    # Precision from the magnitude of the mean: scores/rates get 3 decimals, lengths and
    # pair counts fewer; mean and std share it so the cell lines up.
    a = abs(x)
    return 3 if a < 10 else 1 if a < 1000 else 0


def format_stat(s: Stat | None, missing: str = "—") -> str:
    """``mean ± std (n)``; a single seed shows just its value; no data shows `missing`."""
    if s is None:
        return missing
    d = _decimals(s.mean)
    if s.std is None:
        return f"{s.mean:.{d}f}"
    return f"{s.mean:.{d}f} ± {s.std:.{d}f} ({s.n})"
