"""One PNG per analysis, readable without the text: title, axis labels with units, legend, CI bars/bands.

matplotlib is imported inside each function (it is the ``plot`` extra), and figures
are built with the object API (``matplotlib.figure.Figure``), so no GUI backend or
global pyplot state is involved.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from r2bench.atomic import atomic_path

DPI = 110


def _figure(w: float, h: float, ncols: int = 1):
    from r2bench.extras import require

    require("matplotlib", purpose="analysis plots")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def _save(fig, path: Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _colors(n: int):
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _color_map(labels) -> dict:
    """One colour per method label, the same in every panel."""
    labels = list(dict.fromkeys(labels))
    return dict(zip(labels, _colors(len(labels))))


def _grouped_bars(ax, long: pl.DataFrame, metric: str, title: str, xlabel: str, colors: dict | None = None) -> None:
    groups = long.sort("group_order")["group"].unique(maintain_order=True).to_list()
    methods = long["method"].unique(maintain_order=True).to_list()
    colors = colors or _color_map(methods)
    width = 0.8 / max(len(methods), 1)
    x = np.arange(len(groups))
    for i, m in enumerate(methods):
        c = colors[m]
        part = {g: (mean, lo, hi) for g, mean, lo, hi in
                long.filter(pl.col("method") == m).select("group", "mean", "ci_low", "ci_high").iter_rows()}
        vals = np.array([part.get(g, (np.nan,) * 3) for g in groups], dtype=float)
        err = np.vstack([vals[:, 0] - vals[:, 1], vals[:, 2] - vals[:, 0]])
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, vals[:, 0], width, yerr=err, capsize=2,
               label=m, color=c, alpha=0.85)
    sizes = long.group_by("group", "group_order").agg(pl.col("n").max()).sort("group_order")
    ax.set_xticks(x, [f"{g}\nn={n}" for g, _, n in sizes.iter_rows()], fontsize=8)
    ax.set_ylabel(f"{metric.upper()} (mean, 95% CI)")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)


def cold_start_figure(long_bins: pl.DataFrame, long_fixed: pl.DataFrame, imp: pl.DataFrame, ref: str,
                      metric: str, path: Path) -> Path:
    ncols = 3 if imp.height else 2
    fig, axes = _figure(5.0 * ncols, 4.4, ncols)
    colors = _color_map(long_bins["method"].to_list())
    _grouped_bars(axes[0], long_bins, metric, "(a) equal-count frequency bins", "target train frequency bin", colors)
    _grouped_bars(axes[1], long_fixed, metric, "(b) fixed frequency groups", "target train frequency", colors)
    axes[0].legend(fontsize=8)
    if imp.height:
        ax = axes[2]
        groups = imp["group"].unique(maintain_order=True).to_list()
        others = imp["other"].unique(maintain_order=True).to_list()
        width = 0.8 / max(len(others), 1)
        x = np.arange(len(groups))
        for i, o in enumerate(others):
            c = colors.get(o, "gray")
            d = dict(zip(*imp.filter(pl.col("other") == o).select("group", "delta").to_dict(as_series=False).values()))
            sig = dict(zip(*imp.filter(pl.col("other") == o).select("group", "sig").to_dict(as_series=False).values()))
            xs = x + (i - (len(others) - 1) / 2) * width
            ys = [d.get(g, np.nan) for g in groups]
            ax.bar(xs, ys, width, label=f"vs {o}", color=c)
            for xi, yi, g in zip(xs, ys, groups):  # the paper's markers: † p<.05, ‡ p<.01, § p<.001
                if np.isfinite(yi) and sig.get(g):
                    ax.text(xi, yi, sig[g], ha="center", va="bottom" if yi >= 0 else "top", fontsize=9)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(x, groups, fontsize=8)
        ax.set_ylabel(f"{metric.upper()} difference ({ref} - other)")
        ax.set_xlabel("target train frequency bin")
        ax.set_title(f"(c) improvement of {ref} († p<.05 ‡ p<.01 § p<.001)", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Item cold-start: quality by how often the target was a positive in training")
    return _save(fig, path)


def groups_line_figure(long: pl.DataFrame, metric: str, xlabel: str, title: str, path: Path,
                       numeric_x: bool = False) -> Path:
    fig, (ax,) = _figure(7.0, 4.4)
    methods = long["method"].unique(maintain_order=True).to_list()
    for m, c in zip(methods, _colors(len(methods))):
        part = long.filter(pl.col("method") == m).sort("group_order")
        x = part["group_order"].to_numpy() if numeric_x else np.arange(part.height)
        ax.plot(x, part["mean"].to_numpy(), marker="o", color=c, label=m)
        ax.fill_between(x, part["ci_low"].to_numpy(), part["ci_high"].to_numpy(), color=c, alpha=0.18)
    if not numeric_x:
        groups = long.sort("group_order").group_by("group", "group_order", maintain_order=True).agg(pl.col("n").max())
        ax.set_xticks(np.arange(groups.height), [f"{g}\nn={n}" for g, _, n in groups.iter_rows()])
    else:
        ax.set_xticks(sorted(set(long["group_order"].to_list())))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{metric.upper()} (mean, 95% CI band)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def position_figure(dists: dict[str, dict[int, np.ndarray]], path: Path, sensitivity: dict[str, float] | None = None) -> Path:
    """Box plots of the target's predicted rank per target position, one colour per method (Figure 5)."""
    fig, (ax,) = _figure(max(7.0, 1.2 + 0.8 * sum(len(d) for d in dists.values())), 5.0)
    methods = list(dists)
    positions = sorted({p for d in dists.values() for p in d})
    width = 0.8 / max(len(methods), 1)
    handles = []
    for i, (m, c) in enumerate(zip(methods, _colors(len(methods)))):
        data = [dists[m].get(p, np.array([np.nan])) for p in positions]
        xs = np.arange(len(positions)) + (i - (len(methods) - 1) / 2) * width
        bp = ax.boxplot(data, positions=xs, widths=width * 0.9, patch_artist=True, showmeans=True,
                        meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black", "markersize": 4},
                        medianprops={"color": "black"}, flierprops={"markersize": 2})
        for patch in bp["boxes"]:
            patch.set_facecolor(c)
            patch.set_alpha(0.75)
        handles.append(bp["boxes"][0])
    ax.set_xticks(np.arange(len(positions)), [str(p) for p in positions])
    ax.set_xlabel("position of the target in the candidate list (1 = first listed)")
    ax.set_ylabel("predicted rank of the target (1 = best)")
    k = max((float(np.nanmax(v)) for d in dists.values() for v in d.values() if np.isfinite(v).any()), default=20.0)
    ax.set_yticks(sorted({1, *range(5, int(np.ceil(k)) + 1, 5)}))
    ax.invert_yaxis()
    ax.set_title("Candidate position sensitivity (box = quartiles, diamond = mean)")
    ax.grid(axis="y", alpha=0.3)
    sens = sensitivity or {}
    names = [f"{m} (sensitivity {sens[m]:.2f} ranks)" if m in sens else m for m in methods]
    ax.legend(handles, names, fontsize=8, loc="best")
    return _save(fig, path)


def candidate_shuffle_figure(bars, metric: str, path: Path) -> Path:
    """Original vs shuffled candidate order per method, with 95% CIs and the invariance verdict."""
    fig, (ax,) = _figure(max(6.0, 1.5 * len(bars) + 2), 4.4)
    x = np.arange(len(bars))
    for j, (name, key, color) in enumerate((("original order", 2, "#4c72b0"), ("shuffled", 3, "#dd8452"))):
        vals = np.array([b[key] for b in bars], dtype=float)
        err = np.vstack([vals[:, 0] - vals[:, 1], vals[:, 2] - vals[:, 0]])
        ax.bar(x + (j - 0.5) * 0.38, vals[:, 0], 0.38, yerr=err, capsize=3, label=name, color=color)
    for xi, b in zip(x, bars):
        top = max(b[2][2], b[3][2])
        ax.text(xi, top, "invariant" if b[4] else "order-sensitive", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [f"{b[0]}\n(seed {b[1]})" for b in bars], fontsize=8)
    ax.set_ylabel(f"{metric.upper()} (mean, 95% CI)")
    ax.set_xlabel("method")
    ax.set_title("Candidate shuffling: permutation invariance")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def history_shuffle_figure(points: dict[str, tuple[list[float], float]], metric: str, path: Path) -> Path:
    fig, (ax,) = _figure(max(6.0, 1.4 * len(points) + 2), 4.4)
    rng = np.random.default_rng(0)
    for i, (m, (perm, orig)) in enumerate(points.items()):
        jitter = rng.uniform(-0.12, 0.12, size=len(perm))
        ax.scatter(np.full(len(perm), i) + jitter, perm, s=18, color="#4c72b0", alpha=0.8,
                   label="shuffled history (one per permutation)" if i == 0 else None)
        if np.isfinite(orig):
            ax.scatter([i], [orig], marker="*", s=160, color="#c44e52", zorder=3,
                       label="original (chronological) order" if i == 0 else None)
    ax.set_xticks(np.arange(len(points)), list(points))
    ax.set_xlabel("method")
    ax.set_ylabel(f"mean {metric.upper()} over instances")
    ax.set_title("History order shuffling")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def transfer_figure(matrices: dict[str, pl.DataFrame], metric: str, path: Path) -> Path:
    """One heat map per method: rows trained on, columns tested on, NaN cells (not run / cannot transfer) blank."""
    n = len(matrices)
    fig, axes = _figure(4.2 * n + 0.8, 4.0, n)
    for ax, (m, mat) in zip(axes, matrices.items()):
        rows = mat["train \\ test"].to_list()
        cols = [c for c in mat.columns if c != "train \\ test"]
        vals = np.array([[np.nan if v is None else v for v in mat[c].to_list()] for c in cols], dtype=float).T
        vmax = max(float(np.nanmax(vals)) if np.isfinite(vals).any() else 1.0, 1e-6)
        im = ax.imshow(np.ma.masked_invalid(vals), cmap="viridis", vmin=0.0, vmax=vmax)
        for i in range(len(rows)):
            for j in range(len(cols)):
                v = vals[i, j]
                if not np.isfinite(v):
                    ax.text(j, i, "not run", ha="center", va="center", color="gray", fontsize=9)
                else:  # dark text on the light (high) end of viridis
                    ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=9,
                            color="black" if v > 0.6 * vmax else "white")
        ax.set_xticks(range(len(cols)), cols, rotation=20, fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set_xlabel("tested on")
        ax.set_ylabel("trained on")
        ax.set_title(m)
        fig.colorbar(im, ax=ax, label=f"{metric.upper()}")
    fig.suptitle("Cross-dataset transfer (diagonal = in-domain)")
    return _save(fig, path)
