"""PNG plots: metrics over iterations, and win/tie/loss bars (the paper's Fig. 3).

Figures are built with ``matplotlib.figure.Figure`` and saved through the Agg canvas,
never through pyplot: no display is needed and the caller's global backend/state is
left untouched.
"""

from __future__ import annotations

import math
from pathlib import Path

from .aggregate import Grid
from .tables import H2H

# (panel title, dotted metric path, y-axis label)
ITERATION_METRICS = [("gt_score", "eval.gt_score", "mean ground-truth score (0-5)"),
                     ("gt_exact", "eval.gt_exact", "share exactly right"),
                     ("pairwise_acc", "judge.pairwise_acc", "judge pairwise accuracy"),
                     ("spearman", "judge.spearman", "judge Spearman ρ vs truth"),
                     ("judge parse rate", "judge.parse_rate", "share of judgments parsed"),
                     ("win vs M1", "head_to_head.vs_M1.win", "share of prompts won vs M1")]
WTL_COLORS = {"win": "#4c9a2a", "tie": "#b0b0b0", "loss": "#c8423b"}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def legend_labels(grid: Grid, names: dict[str, str] | None, seeds: dict[str, int] | None) -> dict[str, str]:
    """Each variant's legend entry: its short name, and how many seeds it has (``n=1``: no error bar)."""
    out = {}
    for v in grid.variants:
        name = (names or {}).get(v, v)
        n = (seeds or {}).get(v)
        out[v] = name if n is None else f"{name} (n={n}{': no error bar' if n == 1 else ''})"
    return out


def _dedupe_comparisons(rows: list[H2H]) -> list[H2H]:
    """Drop a "vs prev" bar where the predecessor is M1 and a "vs M1" bar of the same model and judge exists:
    M2's two comparisons are one comparison, drawn once."""
    have = {(h.variant, h.iteration, h.source) for h in rows if h.opponent == "M1"}
    return [h for h in rows if not (h.opponent == "M1 (prev)" and (h.variant, h.iteration, h.source) in have)]


def plot_metrics_over_iterations(grid: Grid, path: Path, names: dict[str, str] | None = None,
                                 seeds: dict[str, int] | None = None, legend_title: str = "") -> Path:
    """Subplots of ITERATION_METRICS vs model, one line per variant (legend: `names`, default the variant
    label, with its number of `seeds`), std error bars where a cell has two seeds or more."""
    entries = legend_labels(grid, names, seeds)
    fig = _figure(14, 8)
    axes = fig.subplots(2, 3).ravel()
    # Tick labels from the model names; fall back to "M<i>" if variants disagree.
    models_at: dict[int, set] = {}
    for (_, i), m in grid.models.items():
        models_at.setdefault(i, set()).add(m)
    ticks = sorted(models_at)
    for ax, (title, metric, ylabel) in zip(axes, ITERATION_METRICS):
        plotted = False
        for k, variant in enumerate(grid.variants):
            found = [(i, grid.stat((variant, i), metric)) for i in grid.iterations(variant)]
            pts = [(i, s) for i, s in found if s is not None]
            if not pts:
                continue
            # A small x offset per variant keeps overlapping error bars readable.
            dx = 0.04 * (k - (len(grid.variants) - 1) / 2)
            # An undefined metric (None: e.g. Spearman of a judge nothing of which parsed) is no point at all.
            ax.errorbar([i + dx for i, _ in pts], [s.mean for _, s in pts],
                        yerr=[s.std or 0.0 for _, s in pts], marker="o", capsize=3, label=entries[variant])
            plotted = True
        ax.set_title(title)
        ax.set_xlabel("model (iteration)")
        ax.set_ylabel(ylabel)
        ax.set_xticks(ticks)
        ax.set_xticklabels([next(iter(models_at[i])) if len(models_at[i]) == 1 else f"M{i}" for i in ticks])
        ax.grid(alpha=0.3)
        if not plotted:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="gray")
    # One legend entry per variant, from whichever panel drew it (a variant may lack a metric in some).
    drawn: dict[str, object] = {}
    for a in axes:
        for h, lab in zip(*a.get_legend_handles_labels()):
            drawn.setdefault(lab, h)
    labels = [entries[v] for v in grid.variants if entries[v] in drawn]
    handles = [drawn[lab] for lab in labels]
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize="small",
                   title=legend_title or None, title_fontsize="small")
    fig.suptitle("Metrics over iterations (mean ± std over seeds; n = seeds)")
    fig.tight_layout(rect=(0, 0.04 + 0.03 * (math.ceil(len(labels) / 3) + bool(legend_title)), 1, 0.96))
    fig.savefig(path, dpi=110)
    return path


def plot_head_to_head(rows: list[H2H], variants: list[str], path: Path,
                      names: dict[str, str] | None = None) -> Path | None:
    """Stacked horizontal win/tie/loss bars, one per variant × comparison (each comparison once, the
    variant by its short name in `names`, with its number of seeds); None if no data."""
    rows = _dedupe_comparisons(rows)
    if not rows:
        return None
    order = {v: k for k, v in enumerate(variants)}
    rows = sorted(rows, key=lambda h: (order.get(h.variant, len(order)), h.source != "head_to_head", h.iteration))
    height = 1.8 + 0.45 * len(rows)
    fig = _figure(10, height)
    ax = fig.subplots()
    ys = list(range(len(rows)))[::-1]  # first row on top
    for y, h in zip(ys, rows):
        left = 0.0
        for part in ("win", "tie", "loss"):
            x = getattr(h, part) or 0.0  # a missing share draws nothing rather than failing
            ax.barh(y, x, left=left, color=WTL_COLORS[part], edgecolor="white",
                    label=part if y == ys[0] else None)
            if x >= 0.06:
                ax.text(left + x / 2, y, f"{100 * x:.0f}%", ha="center", va="center", fontsize=8)
            left += x
    ax.set_yticks(ys)
    ax.set_yticklabels([f"{(names or {}).get(h.variant, h.variant)} · {h.label} (n={h.n})"
                        + (" [ext. judge]" if h.source == "external_judge" else "") for h in rows], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of held-out prompts (mean over seeds; n = seeds)")
    ax.set_ylabel("variant · comparison")
    ax.set_title("Head-to-head win / tie / loss")
    # Legend in a fixed-size strip (in inches) under the axes, so it never covers the
    # x label however many bars there are.
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=3, fontsize="small")
    fig.tight_layout(rect=(0, 0.4 / height, 1, 1))
    fig.savefig(path, dpi=110)
    return path
