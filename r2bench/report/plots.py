"""Report plots (matplotlib, imported only when a plot is drawn; object API, no display).

:func:`bar_chart` draws one panel per comparison (benchmark, split and set of scored
instances): a horizontal bar per run, in the tables' order, with its bootstrap CI, its
value and significance marker at the end of the bar, and the run's label beside it
(wrapped). Colours follow :mod:`r2bench.report.style` (one per method in every figure).
The figure grows with the number of runs and comparisons.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from r2bench.report import style as S


def bar_chart_figure(compare: pl.DataFrame, metric: str = "ndcg@10", title: str | None = None):
    """The :func:`bar_chart` figure, not saved (the layout tests read its bounding boxes)."""
    df = compare.filter(pl.col("metric") == metric)
    if df.height == 0:
        raise ValueError(f"no {metric} values to plot")
    panel_col = "comparison" if "comparison" in df.columns else "dataset"
    panels = df[panel_col].unique(maintain_order=True).to_list()
    method_of = dict(df.select("label", "method").unique(subset="label", maintain_order=True).iter_rows())
    styles = S.run_styles(method_of, method_of)
    sizes = [df.filter(pl.col(panel_col) == p).height for p in panels]
    width = 7.5
    heights = [0.55 + 0.42 * n + (0.2 if len(panels) > 1 else 0) for n in sizes]
    head = S.title_lines(title or f"{metric.upper()} (mean, 95% bootstrap CI)", width, 11)
    fig, axes = S.figure(width, sum(heights) + 0.55 + 0.18 * head.count("\n"), len(panels), 1, sharex=True,
                         gridspec_kw={"height_ratios": heights})
    top = float(np.nanmax(df["ci_high"].to_numpy()))
    xmax = min(1.0, top * 1.12 + 0.02) + 0.14  # room for the value written after each bar
    for ax, panel in zip(axes[:, 0], panels):
        part = df.filter(pl.col(panel_col) == panel)
        labels = S.ordered(part["label"].to_list(), method_of)
        rows = {r["label"]: r for r in part.iter_rows(named=True)}
        y = np.arange(len(labels))
        for yi, lab in zip(y, labels):
            r, st = rows[lab], styles[lab]
            ax.barh(yi, r["mean"], 0.7, xerr=[[r["mean"] - r["ci_low"]], [r["ci_high"] - r["mean"]]], capsize=3,
                    color=st.color, hatch=st.hatch, edgecolor="white" if not st.hatch else "#333333", linewidth=0.5,
                    error_kw={"elinewidth": 1, "ecolor": "#333333"})
            ax.text(r["ci_high"] + 0.01, yi, f"{r['mean']:.3f}{r.get('marker') or ''}", va="center", fontsize=8)
        ax.set_yticks(y, [S.wrap(lab) for lab in labels], fontsize=8)
        pad = max(0.1, (2.5 - len(labels)) / 2)  # one bar keeps the thickness of one bar among several
        ax.set_ylim(len(labels) - 0.5 + pad, -0.5 - pad)
        ax.set_xlim(0, xmax)
        ax.grid(axis="x", alpha=0.3)
        if len(panels) > 1:
            ax.set_title(S.wrap(panel, 90), fontsize=9, loc="left")
    axes[-1, 0].set_xlabel(f"{metric.upper()} (bars: mean; whiskers: 95% bootstrap CI)")
    fig.suptitle(head, fontsize=11)
    return fig


def bar_chart(compare: pl.DataFrame, path: str | Path, metric: str = "ndcg@10", title: str | None = None) -> Path:
    """Bars of ``metric`` per comparison and run (see the module docstring), written as PNG to ``path``."""
    return S.save(bar_chart_figure(compare, metric, title), path)
