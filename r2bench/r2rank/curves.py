"""The learning curves of head runs (``<out>/log.csv`` of ``r2bench r2rank head``) as one PNG.

Left: held-out NDCG@10 of the head's ranking after every epoch (solid) and the same
on the train instances (dotted), one colour per run, the best epoch marked, the
chance level and optional reference lines (e.g. the zero-shot model on the same
split). Right: the mean NDCG@10 of the rankings sampled from Plackett-Luce during each
epoch (the REINFORCE reward; the probe has none).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from r2bench.atomic import atomic_path


def plot_head_logs(logs: dict[str, str | Path], out: str | Path, *, chance: float | None = None,
                   references: dict[str, float] | None = None, title: str = "") -> Path:
    """Write the curves of ``{label: log.csv}`` to ``out`` (PNG) and return its path."""
    from r2bench.extras import require

    require("matplotlib", purpose="learning-curve plots")
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11, 5.2), dpi=110, layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[3, 2])
    colors = colormaps["tab10"]
    evaluated, last_step = False, 1.0
    for i, (label, path) in enumerate(logs.items()):
        df = pl.read_csv(path, infer_schema_length=None).with_columns(pl.exclude("epoch", "steps").cast(pl.Float64))
        c = colors(i % 10)
        best = df.filter(pl.col("val_ndcg10") == pl.col("val_ndcg10").max()).row(0, named=True)
        left.plot(df["epoch"], df["val_ndcg10"], color=c, lw=1.8, label=f"{label}: held-out (best {best['val_ndcg10']:.3f}"
                                                                    f" at epoch {best['epoch']})")
        left.plot(df["epoch"], df["train_ndcg10"], color=c, lw=1.0, ls=":", label=f"{label}: train instances")
        left.scatter([best["epoch"]], [best["val_ndcg10"]], color=c, zorder=3, s=28)
        reward = df.filter(pl.col("epoch") > 0).select("epoch", "train_reward").drop_nans()
        if reward.height:
            right.plot(reward["epoch"], reward["train_reward"], color=c, lw=1.5, label=label)
    for j, (label, value) in enumerate((references or {}).items()):
        left.axhline(value, color="0.35", ls=("--", "-.", (0, (5, 1, 1, 1)))[j % 3], lw=1.0, label=label)
    if chance is not None:
        for ax in (left, right):
            ax.axhline(chance, color="0.6", ls="--", lw=1.0, label=f"chance ({chance:.3f})")
    left.set_xlabel("epoch (one pass over the train instances)")
    left.set_ylabel("NDCG@10 of the head's ranking")
    left.set_title("Ranking quality per epoch")
    left.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    right.set_xlabel("epoch")
    right.set_ylabel("mean NDCG@10 of sampled rankings")
    right.set_title("REINFORCE reward (Plackett-Luce samples)")
    right.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    if title:
        fig.suptitle(title, fontsize=10)
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    return out


def plot_rl_logs(logs: dict[str, str | Path], out: str | Path, *, chance: float | None = None,
                 references: dict[str, float] | None = None, title: str = "") -> Path:
    """The curves of RL runs (``<out>/log.csv`` of ``r2bench r2rank rl``): reward per step and held-out NDCG@10.

    Left: the mean NDCG@10 of the Plackett-Luce rankings sampled in each step (the reward,
    thin) and its moving average over 5 steps (thick). Right: the held-out NDCG@10 of the
    greedy ranking, measured every ``eval_every`` steps, with the chance level and optional
    reference lines (e.g. the zero-shot and SFT-only models on the same instances).
    """
    from r2bench.extras import require

    require("matplotlib", purpose="learning-curve plots")
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11, 5.2), dpi=110, layout="constrained")
    left, right = fig.subplots(1, 2)
    colors = colormaps["tab10"]
    evaluated, last_step = False, 1.0
    for i, (label, path) in enumerate(logs.items()):
        df = pl.read_csv(path, infer_schema_length=None).with_columns(pl.exclude("step").cast(pl.Float64)).sort("step")
        c = colors(i % 10)
        last_step = max(last_step, float(df["step"].max() or 1))
        few = dict(marker="o", ms=4) if df.height <= 20 else {}  # a run of a few steps is points, not a line
        left.plot(df["step"], df["reward"], color=c, lw=0.8, alpha=0.45, **few)
        smooth = df["reward"].rolling_mean(window_size=min(5, df.height), min_samples=1)
        left.plot(df["step"], smooth, color=c, lw=2.0, label=f"{label} (5-step mean)", **few)
        held = df.select("step", "greedy_ndcg").drop_nans().drop_nulls()
        evaluated = evaluated or held.height > 0
        if held.height:
            right.plot(held["step"], held["greedy_ndcg"], color=c, lw=1.8, marker="o", ms=4,
                       label=f"{label} (last {held['greedy_ndcg'][-1]:.3f})")
    for j, (label, value) in enumerate((references or {}).items()):
        right.axhline(value, color="0.35", ls=("--", "-.", (0, (5, 1, 1, 1)))[j % 3], lw=1.0, label=label)
    if chance is not None:
        for ax in (left, right):
            ax.axhline(chance, color="0.6", ls="--", lw=1.0, label=f"chance ({chance:.3f})")
    if not evaluated:
        right.text(0.5, 0.5, "no held-out evaluation was logged\n(eval_every > steps, or eval_instances=0)",
                   ha="center", va="center", transform=right.transAxes, fontsize=9, color="0.3")
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0, last_step + max(1.0, 0.02 * last_step))  # step 0 (the start) is where evaluations begin
    left.set_xlabel("RL step")
    left.set_ylabel("mean NDCG@10 of sampled rankings")
    left.set_title("Reward (Plackett-Luce samples of the step's instances)")
    right.set_xlabel("RL step")
    right.set_ylabel("NDCG@10 of the greedy ranking")
    right.set_title("Held-out NDCG@10")
    for ax in (left, right):
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    if title:
        fig.suptitle(title, fontsize=10)
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    return out
