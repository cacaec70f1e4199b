"""Every figure r2bench draws stays readable from 1 to 12 runs with 40-character labels.

The figures are built from inputs shaped exactly as the report and the analyses make
them (``plot_data``), for 1, 3, 10 and 12 runs whose labels are 40 characters long, and
checked with :func:`tests.plot_layout.layout_problems` (matplotlib's own bounding boxes:
nothing leaves the figure, no legend on an axes, no title / tick label on another panel,
no colliding tick labels).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tests.plot_layout import layout_problems

pytest.importorskip("matplotlib")

METHODS = ("random", "popularity", "item-cooccurrence", "sasrec", "llm-listwise", "r2rank", "my-own-method")


def labels(n: int) -> dict[str, str]:
    """label -> method: ``n`` labels of exactly 40 characters (several runs per method)."""
    out = {}
    for i in range(n):
        m = METHODS[i % len(METHODS)]
        out[f"{m} window={i} learning_rate=0.0{i:02d} seed={i}".ljust(40, "x")[:40]] = m
    assert all(len(lab) == 40 for lab in out)
    return out


def _ci(rng, n):
    mean = rng.uniform(0.1, 0.9, n)
    return mean, np.clip(mean - rng.uniform(0.02, 0.1, n), 0, 1), np.clip(mean + rng.uniform(0.02, 0.1, n), 0, 1)


def _long(method_of, groups, rng) -> pl.DataFrame:
    rows = []
    for lab in method_of:
        mean, lo, hi = _ci(rng, len(groups))
        for j, g in enumerate(groups):
            rows.append({"method": lab, "group": g, "group_order": j, "n": 24, "mean": mean[j], "ci_low": lo[j],
                         "ci_high": hi[j]})
    return pl.DataFrame(rows)


def build_all(n: int):
    """(name, Figure) for every figure function, with ``n`` runs."""
    from r2bench.analyses import plots as A
    from r2bench.analyses.transfer import CORNER
    from r2bench.leaderboard.render import plot_figure
    from r2bench.report.plots import bar_chart_figure

    rng = np.random.default_rng(n)
    mo = labels(n)
    labs = list(mo)
    compare = []
    for comp, subset in (("movielens-100k test, all 95 instances", labs),
                         ("movielens-100k test, first 3 instances (--limit 3)", labs[: max(1, n // 2)])):
        mean, lo, hi = _ci(rng, len(subset))
        for i, lab in enumerate(subset):
            compare.append({"comparison": comp, "label": lab, "method": mo[lab], "metric": "ndcg@10", "mean": mean[i],
                            "ci_low": lo[i], "ci_high": hi[i], "marker": "§" if i == 0 else ""})
    yield "report ndcg10", bar_chart_figure(pl.DataFrame(compare))

    bins = ["Q1 (freq 0-3)", "Q2 (freq 3-12)", "Q3 (freq 12-40)", "Q4 (freq 40-400)"]
    imp = pl.DataFrame([{"group": g, "other": lab, "delta": float(rng.uniform(-0.2, 0.4)), "sig": "†"}
                        for g in bins for lab in labs[1:]]) if n > 1 else pl.DataFrame()
    yield "cold-start", A.cold_start_figure.build(
        _long(mo, bins, rng), _long(mo, ["never seen (0)", "1-5", ">5"], rng), imp, labs[0], "ndcg@10", method_of=mo)
    yield "history-length", A.groups_line_figure.build(
        _long(mo, ["1-5", "6-10", "11-15", "16-20"], rng), "ndcg@10", "history length (items)",
        "Recommendation quality by user history length", method_of=mo)
    trunc = _long(mo, ["1", "5", "10", "15", "20"], rng).with_columns(
        pl.col("group").cast(pl.Int64).alias("group_order"))
    yield "truncation", A.groups_line_figure.build(trunc, "ndcg@10", "most recent history items kept (k)",
                                                   "Recommendation quality vs history kept", numeric_x=True,
                                                   method_of=mo)
    dists = {lab: {p: rng.integers(1, 21, 50).astype(float) for p in (1, 10, 20)} for lab in labs}
    yield "position", A.position_figure.build(dists, {lab: float(rng.uniform(0, 19)) for lab in labs}, method_of=mo)
    bars = [(lab, 0, (m, m - 0.05, m + 0.05), (m, m - 0.05, m + 0.04), i % 2 == 0)
            for i, (lab, m) in enumerate(zip(labs, rng.uniform(0.2, 0.8, n)))]
    yield "candidate-shuffle", A.candidate_shuffle_figure.build(bars, "ndcg@10", method_of=mo)
    points = {lab: (list(rng.uniform(0.3, 0.7, 5)), float(rng.uniform(0.3, 0.7))) for lab in labs}
    yield "history-shuffle", A.history_shuffle_figure.build(points, "ndcg@10", method_of=mo)
    ds = ["amazon-video-games", "amazon-movies-and-tv", "movielens-100k"]
    mats = {lab: pl.DataFrame({CORNER: ds, **{c: [float(rng.uniform(0, 0.8)) if (r + j) % 4 else None
                                                    for r in range(3)] for j, c in enumerate(ds)}})
            for lab in labs}
    yield "transfer", A.transfer_figure.build(mats, "ndcg@10", method_of=mo)
    yield "leaderboard", plot_figure(labs, rng.uniform(0.2, 0.7, n), [0.03] * n, [0.04] * n,
                                     "Leaderboard with a long title: MovieLens-100K (offline, test split)")


@pytest.mark.parametrize("n", [1, 3, 10, 12])
def test_figures_stay_readable(n):
    problems = {}
    for name, fig in build_all(n):
        found = layout_problems(fig)
        if found:
            problems[name] = found[:5]
    assert not problems, f"{n} runs: " + "; ".join(f"{k}: {v}" for k, v in problems.items())


def test_figures_grow_with_their_content():
    small = dict(build_all(1))
    big = dict(build_all(12))
    for name in ("report ndcg10", "cold-start", "position", "candidate-shuffle", "history-shuffle", "leaderboard"):
        w1, h1 = small[name].get_size_inches()
        w2, h2 = big[name].get_size_inches()
        assert w2 * h2 > w1 * h1 * 1.2, name


def test_the_checker_sees_a_bad_layout():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2))
    a, b = fig.subplots(1, 2)
    a.plot([0, 1], label="a label inside the axes")
    a.legend(loc="upper left")
    a.set_title("a title far too long for a panel of this figure, so it runs over its neighbour")
    b.set_yticks([0, 0.001], ["0", "a tick label that reaches into the other panel"])
    found = " | ".join(layout_problems(fig))
    assert "legend overlaps an axes" in found
    assert "leaves the figure" in found and "overlaps the axes of another panel" in found


def test_one_colour_per_method_in_table_order():
    from r2bench.report.style import METHOD_COLORS, ordered, run_styles

    mo = {"r2rank": "r2rank", "item-cooccurrence window=3": "item-cooccurrence", "random": "random",
          "item-cooccurrence": "item-cooccurrence", "zeta-method": "zeta-method", "alpha-method": "alpha-method"}
    # method groups as the tables (methods r2bench does not know last, by name), runs of a method as given
    assert ordered(mo, mo) == ["random", "item-cooccurrence window=3", "item-cooccurrence", "r2rank",
                               "alpha-method", "zeta-method"]
    st = run_styles(mo, mo)
    assert st["random"].color == METHOD_COLORS["random"] and st["r2rank"].color == METHOD_COLORS["r2rank"]
    # the second run of a method: another shade and a hatch, not another method's colour
    a, b = st["item-cooccurrence window=3"], st["item-cooccurrence"]
    assert a.color == METHOD_COLORS["item-cooccurrence"] and b.color != a.color and b.hatch and not a.hatch
    # the same method gets the same colour whatever else is drawn
    assert run_styles({"r2rank": "r2rank"})["r2rank"].color == st["r2rank"].color
    assert run_styles({"zeta-method": "zeta-method"})["zeta-method"].color == st["zeta-method"].color
