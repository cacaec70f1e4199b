"""Report plots (matplotlib, imported only when a plot is drawn; Agg backend, no display)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl


def _pyplot():
    from r2bench.extras import require

    mpl = require("matplotlib", purpose="report plots")
    mpl.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def bar_chart(compare: pl.DataFrame, path: str | Path, metric: str = "ndcg@10", title: str | None = None) -> Path:
    """Grouped bars of ``metric`` per dataset (groups) and run label (bars) with the
    bootstrap CI as error bars; written as PNG to ``path`` (atomically)."""
    from r2bench.atomic import atomic_path

    plt = _pyplot()
    df = compare.filter(pl.col("metric") == metric)
    if df.height == 0:
        raise ValueError(f"no {metric} values to plot")
    datasets = df["dataset"].unique(maintain_order=True).to_list()
    labels = df["label"].unique(maintain_order=True).to_list()
    width = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 + len(datasets) * len(labels) * 0.45), 3.6), dpi=110)
    x = np.arange(len(datasets))
    for j, label in enumerate(labels):
        sub = {r["dataset"]: r for r in df.filter(pl.col("label") == label).iter_rows(named=True)}
        means = np.array([sub[d]["mean"] if d in sub else np.nan for d in datasets])
        lo = np.array([sub[d]["mean"] - sub[d]["ci_low"] if d in sub else 0 for d in datasets])
        hi = np.array([sub[d]["ci_high"] - sub[d]["mean"] if d in sub else 0 for d in datasets])
        ax.bar(x + (j - (len(labels) - 1) / 2) * width, means, width, yerr=np.vstack([lo, hi]),
               capsize=3, label=label)
    ax.set_xticks(x, datasets)
    ax.set_ylabel(metric.upper().replace("@", "@"))
    ax.set_title(title or f"{metric} with 95% bootstrap CIs")
    ax.legend(fontsize=8, ncols=min(len(labels), 3), loc="upper left", frameon=False)
    ax.set_ylim(0, min(1.0, float(np.nanmax(df["ci_high"].to_numpy())) * 1.25 + 0.02))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
