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

ITERATION_METRICS = [("gt_score", "eval.gt_score"), ("gt_exact", "eval.gt_exact"),
                     ("pairwise_acc", "judge.pairwise_acc"), ("spearman", "judge.spearman")]
WTL_COLORS = {"win": "#4c9a2a", "tie": "#b0b0b0", "loss": "#c8423b"}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def plot_metrics_over_iterations(grid: Grid, path: Path) -> Path:
    """2×2 subplots of ITERATION_METRICS vs iteration, one line per variant, std error bars."""
    fig = _figure(11, 7.5)
    axes = fig.subplots(2, 2).ravel()
    # Tick labels from the model names; fall back to "M<i>" if variants disagree.
    names: dict[int, set] = {}
    for (v, i), m in grid.models.items():
        names.setdefault(i, set()).add(m)
    ticks = sorted(names)
    for ax, (title, metric) in zip(axes, ITERATION_METRICS):
        plotted = False
        for k, variant in enumerate(grid.variants):
            pts = [(i, grid.stat((variant, i), metric)) for i in grid.iterations(variant)]
            pts = [(i, s) for i, s in pts if s is not None]
            if not pts:
                continue
            # A small x offset per variant keeps overlapping error bars readable.
            dx = 0.04 * (k - (len(grid.variants) - 1) / 2)
            ax.errorbar([i + dx for i, _ in pts], [s.mean for _, s in pts],
                        yerr=[s.std or 0.0 for _, s in pts], marker="o", capsize=3, label=variant)
            plotted = True
        ax.set_title(title)
        ax.set_xticks(ticks)
        ax.set_xticklabels([next(iter(names[i])) if len(names[i]) == 1 else f"M{i}" for i in ticks])
        ax.grid(alpha=0.3)
        if not plotted:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="gray")
    handles, labels = next(((h, l) for h, l in (a.get_legend_handles_labels() for a in axes) if h), ([], []))
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize="small")
    fig.suptitle("Metrics over iterations (mean ± std over seeds)")
    fig.tight_layout(rect=(0, 0.04 + 0.03 * math.ceil(len(labels) / 3), 1, 0.96))
    fig.savefig(path, dpi=110)
    return path


def plot_head_to_head(rows: list[H2H], variants: list[str], path: Path) -> Path | None:
    """Stacked horizontal win/tie/loss bars, one per variant × comparison; None if no data."""
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
    ax.set_yticklabels([f"{h.variant} · {h.label}" + (" [ext]" if h.source == "external_judge" else "")
                        for h in rows], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of prompts (mean over seeds)")
    ax.set_title("Head-to-head win / tie / loss")
    # Legend in a fixed-size strip (in inches) under the axes, so it never covers the
    # x label however many bars there are.
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=3, fontsize="small")
    fig.tight_layout(rect=(0, 0.4 / height, 1, 1))
    fig.savefig(path, dpi=110)
    return path
