"""One PNG per analysis, readable without the text and from 1 to 12 runs with long labels.

Every figure follows :mod:`r2bench.report.style`: one colour per method (the same as in
the report), runs in the tables' order, constrained layout, a size that grows with the
number of runs and groups, wrapped labels, and the legend below the axes, outside them.
Each ``*_figure(..., path)`` saves a PNG; its ``.build(...)`` returns the matplotlib
``Figure`` without saving (the layout tests read its bounding boxes). ``method_of`` maps
each label to its method (for the colours).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path

import numpy as np
import polars as pl

from r2bench.report import style as S


def _png(build: Callable):
    """``figure(..., path=...)`` saves what ``build(...)`` draws; ``figure.build`` is ``build``."""

    @wraps(build)
    def figure(*args, path: Path, **kwargs) -> Path:
        return S.save(build(*args, **kwargs), path)

    figure.build = build
    return figure


def _handles(styles: dict[str, S.Style], labels, kind: str = "bar", ref: str | None = None):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    out = []
    for lab in labels:
        st = styles[lab]
        if kind == "bar":
            out.append(Patch(facecolor=st.color, hatch=st.hatch, edgecolor="#333333" if st.hatch else st.color))
        else:
            out.append(Line2D([], [], color=st.color, linestyle=st.linestyle, marker=st.marker))
    names = [f"{lab} (reference)" if lab == ref else lab for lab in labels]
    return out, names


def _bars_width(n_bars: int, base: float = 7.0) -> float:
    return max(base, 1.6 + 0.2 * n_bars)


def _grouped_bars(ax, long: pl.DataFrame, metric: str, title: str, xlabel: str, labels: list[str],
                  styles: dict[str, S.Style]) -> None:
    groups = long.sort("group_order")["group"].unique(maintain_order=True).to_list()
    width = 0.8 / max(len(labels), 1)
    x = np.arange(len(groups))
    for i, m in enumerate(labels):
        st = styles[m]
        part = {g: (mean, lo, hi) for g, mean, lo, hi in
                long.filter(pl.col("method") == m).select("group", "mean", "ci_low", "ci_high").iter_rows()}
        vals = np.array([part.get(g, (np.nan,) * 3) for g in groups], dtype=float)
        err = np.vstack([vals[:, 0] - vals[:, 1], vals[:, 2] - vals[:, 0]])
        ax.bar(x + (i - (len(labels) - 1) / 2) * width, vals[:, 0], width, yerr=err, capsize=2 if width > 0.1 else 0,
               color=st.color, hatch=st.hatch, edgecolor="#333333" if st.hatch else st.color, linewidth=0.4,
               error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
    sizes = long.group_by("group", "group_order").agg(pl.col("n").max()).sort("group_order")
    ax.set_xticks(x, [f"{S.wrap(g, 18)}\nn={n}" for g, _, n in sizes.iter_rows()], fontsize=8)
    ax.set_ylabel(f"{metric.upper()}\n(mean, 95% CI)", fontsize=9)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_title(title, fontsize=10, loc="left")
    ax.grid(axis="y", alpha=0.3)


def _build_cold_start(long_bins: pl.DataFrame, long_fixed: pl.DataFrame, imp: pl.DataFrame, ref: str,
                      metric: str, method_of: dict[str, str] | None = None):
    labels = S.ordered(long_bins["method"].unique(maintain_order=True).to_list(), method_of or {})
    styles = S.run_styles(labels, method_of)
    n_bins = long_bins["group"].n_unique()
    n_fixed = long_fixed["group"].n_unique()
    others = [lab for lab in labels if imp.height and lab in set(imp["other"].to_list())]
    width = _bars_width(max(n_bins * len(labels), n_fixed * len(labels), n_bins * len(others)))
    nrows = 3 if imp.height else 2
    head = S.title_lines("Item cold-start: quality by how often the target was a positive in training", width)
    height = 2.9 * nrows + 0.5 + 0.2 * head.count("\n") + S.legend_rows(len(labels), width, labels)
    fig, axes = S.figure(width, height, nrows, 1)
    axes = axes[:, 0]
    _grouped_bars(axes[0], long_bins, metric, "(a) equal-count bins of the target's train frequency",
                  "target train frequency bin", labels, styles)
    _grouped_bars(axes[1], long_fixed, metric, "(b) fixed frequency groups", "target train frequency", labels, styles)
    if imp.height:
        ax = axes[2]
        groups = imp["group"].unique(maintain_order=True).to_list()
        w = 0.8 / max(len(others), 1)
        x = np.arange(len(groups))
        for i, o in enumerate(others):
            st = styles[o]
            sub = imp.filter(pl.col("other") == o)
            d = dict(zip(sub["group"].to_list(), sub["delta"].to_list()))
            sig = dict(zip(sub["group"].to_list(), sub["sig"].to_list()))
            xs = x + (i - (len(others) - 1) / 2) * w
            ys = [d.get(g, np.nan) for g in groups]
            ax.bar(xs, ys, w, color=st.color, hatch=st.hatch, edgecolor="#333333" if st.hatch else st.color,
                   linewidth=0.4)
            for xi, yi, g in zip(xs, ys, groups):  # the paper's markers: † p<.05, ‡ p<.01, § p<.001
                if np.isfinite(yi) and sig.get(g):
                    ax.text(xi, yi, sig[g], ha="center", va="bottom" if yi >= 0 else "top", fontsize=8)
        ax.axhline(0, color="black", lw=0.8)
        ax.margins(y=0.15)
        ax.set_xticks(x, [S.wrap(g, 18) for g in groups], fontsize=8)
        ax.set_ylabel(f"{metric.upper()} difference\n(reference - other)", fontsize=9)
        ax.set_xlabel("target train frequency bin", fontsize=9)
        ax.set_title(S.wrap(f"(c) improvement of the reference ({ref}) over each other run, bar colour = the other "
                            f"run († p<.05 ‡ p<.01 § p<.001, paired Wilcoxon)", int(width * 11)),
                     fontsize=10, loc="left")
        ax.grid(axis="y", alpha=0.3)
    S.legend_below(fig, *_handles(styles, labels, "bar", ref))
    fig.suptitle(head, fontsize=11)
    return fig


cold_start_figure = _png(_build_cold_start)


def _build_groups_line(long: pl.DataFrame, metric: str, xlabel: str, title: str, numeric_x: bool = False,
                       method_of: dict[str, str] | None = None):
    labels = S.ordered(long["method"].unique(maintain_order=True).to_list(), method_of or {})
    styles = S.run_styles(labels, method_of)
    width = 7.5
    head = S.title_lines(title, width)
    fig, axes = S.figure(width, 4.2 + 0.2 * head.count("\n") + S.legend_rows(len(labels), width, labels))
    ax = axes[0, 0]
    groups = long.sort("group_order").group_by("group", "group_order", maintain_order=True).agg(pl.col("n").max())
    position = {g: i for i, (g, _, _) in enumerate(groups.iter_rows())}
    single = groups.height == 1  # one group: no line to draw, so the CIs are whiskers, runs side by side
    for i, m in enumerate(labels):
        st = styles[m]
        part = long.filter(pl.col("method") == m).sort("group_order")
        x = part["group_order"].to_numpy() if numeric_x else np.array([position[g] for g in part["group"]])
        mean = part["mean"].to_numpy()
        if single:
            x = x + (i - (len(labels) - 1) / 2) * min(0.08, 0.7 / max(len(labels), 1))
            ax.errorbar(x, mean, yerr=[mean - part["ci_low"].to_numpy(), part["ci_high"].to_numpy() - mean],
                        fmt=st.marker, color=st.color, markersize=5, capsize=3, markeredgecolor="#333333",
                        markeredgewidth=0.4)
            continue
        ax.plot(x, mean, marker=st.marker, linestyle=st.linestyle, color=st.color, markersize=4)
        ax.fill_between(x, part["ci_low"].to_numpy(), part["ci_high"].to_numpy(), color=st.color,
                        alpha=0.07 if len(labels) > 3 else 0.18, linewidth=0)
    if not numeric_x:
        ax.set_xticks(np.arange(groups.height), [f"{S.wrap(g, 18)}\nn={n}" for g, _, n in groups.iter_rows()],
                      fontsize=8)
        ax.set_xlim(-0.5, groups.height - 0.5)
    else:
        ax.set_xticks(sorted(set(long["group_order"].to_list())))
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(f"{metric.upper()} (mean, 95% CI band)", fontsize=9)
    ax.grid(alpha=0.3)
    if single:
        ax.set_ylabel(f"{metric.upper()} (mean, 95% CI)", fontsize=9)
    S.legend_below(fig, *_handles(styles, labels, "line"))
    fig.suptitle(head, fontsize=11)
    return fig


groups_line_figure = _png(_build_groups_line)


def _build_position(dists: dict[str, dict[int, np.ndarray]], sensitivity: dict[str, float] | None = None,
                    method_of: dict[str, str] | None = None):
    """Box plots of the target's predicted rank per target position, one colour per method (Figure 5)."""
    labels = S.ordered(list(dists), method_of or {})
    styles = S.run_styles(labels, method_of)
    positions = sorted({p for d in dists.values() for p in d})
    width = _bars_width(len(labels) * len(positions), 7.5)
    sens = sensitivity or {}
    names = [f"{m}\n(sensitivity {sens[m]:.2f} ranks)" if m in sens else m for m in labels]
    head = S.title_lines("Candidate position sensitivity (box = quartiles, diamond = mean)", width)
    fig, axes = S.figure(width, 4.6 + 0.2 * head.count("\n") + S.legend_rows(len(labels), width, names))
    ax = axes[0, 0]
    w = 0.8 / max(len(labels), 1)
    for i, m in enumerate(labels):
        st = styles[m]
        data = [dists[m].get(p, np.array([np.nan])) for p in positions]
        xs = np.arange(len(positions)) + (i - (len(labels) - 1) / 2) * w
        bp = ax.boxplot(data, positions=xs, widths=w * 0.85, patch_artist=True, showmeans=True, manage_ticks=False,
                        meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black",
                                   "markersize": 3},
                        medianprops={"color": "black"}, flierprops={"markersize": 2})
        for patch in bp["boxes"]:
            patch.set_facecolor(st.color)
            patch.set_hatch(st.hatch)
            patch.set_alpha(0.85)
    ax.set_xticks(np.arange(len(positions)), [str(p) for p in positions])
    ax.set_xlim(-0.5, len(positions) - 0.5)
    ax.set_xlabel("position of the target in the candidate list (1 = first listed)", fontsize=9)
    ax.set_ylabel("predicted rank of the target (1 = best)", fontsize=9)
    k = max((float(np.nanmax(v)) for d in dists.values() for v in d.values() if np.isfinite(v).any()), default=20.0)
    ax.set_yticks(sorted({1, *range(5, int(np.ceil(k)) + 1, 5)}))
    ax.invert_yaxis()
    ax.grid(axis="y", alpha=0.3)
    handles, _ = _handles(styles, labels, "bar")
    S.legend_below(fig, handles, names)
    fig.suptitle(head, fontsize=11)
    return fig


position_figure = _png(_build_position)


def _rows_height(n_rows: int, per_row: float = 0.42) -> float:
    return 1.6 + per_row * n_rows


def _build_candidate_shuffle(bars, metric: str, method_of: dict[str, str] | None = None):
    """Original vs shuffled candidate order per run (a pair of horizontal bars), 95% CIs, the verdict."""
    from matplotlib.patches import Patch

    order = S.ordered([b[0] for b in bars], method_of or {})
    bars = sorted(bars, key=lambda b: (order.index(b[0]), int(b[1])))
    styles = S.run_styles(order, method_of)
    several = len({b[0] for b in bars}) < len(bars)  # several shuffle seeds per run
    names = [S.wrap(f"{b[0]} (shuffle seed {b[1]})" if several else b[0]) for b in bars]
    width = 7.5
    head = S.title_lines("Candidate shuffling: are the scores permutation invariant?", width)
    fig, axes = S.figure(width, _rows_height(len(bars), 0.55) + 0.2 * head.count("\n"))
    ax = axes[0, 0]
    y = np.arange(len(bars))
    top = max((max(b[2][2], b[3][2]) for b in bars), default=0.5)
    for yi, b in zip(y, bars):
        st = styles[b[0]]
        for j, (key, hatch) in enumerate(((2, ""), (3, "//"))):
            m, lo, hi = b[key]
            ax.barh(yi + (j - 0.5) * 0.38, m, 0.38, xerr=[[m - lo], [hi - m]], capsize=2, color=st.color, hatch=hatch,
                    edgecolor="#333333" if hatch else st.color, linewidth=0.4, alpha=1.0 if j == 0 else 0.6,
                    error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
        ax.text(max(b[2][2], b[3][2]) + 0.01 * top, yi, "invariant" if b[4] else "order-sensitive", va="center",
                fontsize=8)
    ax.set_yticks(y, names, fontsize=8)
    pad = max(0.1, (2.5 - len(bars)) / 2)
    ax.set_ylim(len(bars) - 0.5 + pad, -0.5 - pad)
    ax.set_xlim(0, top * 1.35 + 0.02)
    ax.set_xlabel(f"{metric.upper()} (mean, 95% CI)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    S.legend_below(fig, [Patch(facecolor="#999999"), Patch(facecolor="#cccccc", hatch="//", edgecolor="#333333")],
                   ["original candidate order", "shuffled candidate order"])
    fig.suptitle(head, fontsize=11)
    return fig


candidate_shuffle_figure = _png(_build_candidate_shuffle)


def _build_history_shuffle(points: dict[str, tuple[list[float], float]], metric: str,
                           method_of: dict[str, str] | None = None):
    """Per run (one row each), the mean metric under each history permutation and in the original order."""
    from matplotlib.lines import Line2D

    labels = S.ordered(list(points), method_of or {})
    styles = S.run_styles(labels, method_of)
    width = 7.5
    head = S.title_lines("History order shuffling: the mean over instances for each permutation", width)
    fig, axes = S.figure(width, _rows_height(len(labels)) + 0.2 * head.count("\n"))
    ax = axes[0, 0]
    rng = np.random.default_rng(0)
    for i, m in enumerate(labels):
        perm, orig = points[m]
        jitter = rng.uniform(-0.12, 0.12, size=len(perm))
        ax.scatter(perm, np.full(len(perm), i) + jitter, s=22, color=styles[m].color, marker=styles[m].marker,
                   alpha=0.85, edgecolors="#333333", linewidths=0.3)
        if np.isfinite(orig):
            ax.scatter([orig], [i], marker="*", s=150, color="black", zorder=3)
    ax.set_yticks(np.arange(len(labels)), [S.wrap(lab) for lab in labels], fontsize=8)
    pad = max(0.1, (2.5 - len(labels)) / 2)
    ax.set_ylim(len(labels) - 0.5 + pad, -0.5 - pad)
    ax.margins(x=0.08)
    ax.set_xlabel(f"mean {metric.upper()} over instances", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    S.legend_below(fig, [Line2D([], [], marker="o", linestyle="", color="#999999", markeredgecolor="#333333"),
                         Line2D([], [], marker="*", linestyle="", color="black", markersize=11)],
                   ["one shuffled history order (one seed)", "original (chronological) order"])
    fig.suptitle(head, fontsize=11)
    return fig


history_shuffle_figure = _png(_build_history_shuffle)


def _build_transfer(matrices: dict[str, pl.DataFrame], metric: str, method_of: dict[str, str] | None = None):
    """One heat map per run label: rows trained on, columns tested on, cells not run blank."""
    labels = S.ordered(list(matrices), method_of or {})
    n = len(labels)
    ncols = min(n, 3)
    nrows = -(-n // ncols)
    size = max(len(matrices[labels[0]].columns) - 1, 1)
    cell = max(3.4, 1.2 + 0.9 * size)
    width = cell * ncols + 0.8
    head = S.title_lines("Cross-dataset transfer: rows trained on, columns tested on (diagonal = in-domain)", width)
    fig, axes = S.figure(width, (cell - 0.2) * nrows + 0.5 + 0.2 * head.count("\n"), nrows, ncols)
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    im = None
    vmax = max([float(np.nanmax(mat.drop(mat.columns[0]).to_numpy().astype(float))) for mat in matrices.values()
                if mat.width > 1 and np.isfinite(mat.drop(mat.columns[0]).to_numpy().astype(float)).any()] or [1.0])
    for ax, m in zip(axes.flat, labels):
        mat = matrices[m]
        rows = mat[mat.columns[0]].to_list()
        cols = mat.columns[1:]
        vals = np.array([[np.nan if v is None else v for v in mat[c].to_list()] for c in cols], dtype=float).T
        im = ax.imshow(np.ma.masked_invalid(vals), cmap="viridis", vmin=0.0, vmax=max(vmax, 1e-6))
        for i in range(len(rows)):
            for j in range(len(cols)):
                v = vals[i, j]
                if not np.isfinite(v):
                    ax.text(j, i, "not run", ha="center", va="center", color="gray", fontsize=8)
                else:  # dark text on the light (high) end of viridis
                    ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=8,
                            color="black" if v > 0.6 * vmax else "white")
        ax.set_xticks(range(len(cols)), [S.wrap(c, 12) for c in cols], fontsize=8)
        ax.set_yticks(range(len(rows)), [S.wrap(r, 16) for r in rows], fontsize=8)
        ax.set_xlabel("tested on", fontsize=9)
        ax.set_ylabel("trained on", fontsize=9)
        ax.set_title(S.wrap(m, int(cell * 10)), fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=list(axes.flat[:n]), label=metric.upper(), shrink=0.8 if nrows == 1 else 0.5)
    fig.suptitle(head, fontsize=11)
    return fig


transfer_figure = _png(_build_transfer)
