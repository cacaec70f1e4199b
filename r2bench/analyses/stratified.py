"""Stratified analyses from existing runs (no re-run): item cold-start and history length.

Per group and method: the mean of a per-instance metric (NDCG@10 by default) with a
95% bootstrap CI; for cold-start also the improvement of a reference method over each
other method per group, with a paired two-sided Wilcoxon test on the group's instances.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

from r2bench.analyses import strata
from r2bench.analyses.result import AnalysisResult, fmt
from r2bench.analyses.runs_io import RunRecord, check_same_benchmark
from r2bench.analyses.stats import mean_ci, stars, wilcoxon_p
from r2bench.errors import R2BenchError


def base_runs(runs: Sequence[RunRecord]) -> list[RunRecord]:
    """Runs that are neither perturbed nor cross-dataset (the in-domain originals)."""
    return [r for r in runs if r.perturbation is None and r.train_on is None]


def _instances_for(runs: Sequence[RunRecord], benchmark=None) -> tuple[pl.DataFrame, list[str]]:
    """The benchmark instances all runs scored (intersection), plus notes on mismatches."""
    notes: list[str] = []
    bench = benchmark if benchmark is not None else runs[0].benchmark()
    split = str(runs[0].meta.get("split") or "test")
    inst = bench.split(split)
    common: set[int] | None = None
    for r in runs:
        ids = set(r.metrics["instance_id"].to_list())
        common = ids if common is None else common & ids
    sizes = {r.label: r.metrics.height for r in runs}
    if len(set(sizes.values())) > 1:
        notes.append(f"runs cover different numbers of instances ({sizes}); compared on the {len(common or ())} they share")
    inst = inst.filter(pl.col("instance_id").is_in(sorted(common or ())))
    if inst.height == 0:
        raise R2BenchError("the runs share no instance of the benchmark split they name")
    return inst, notes


def per_group(runs: Sequence[RunRecord], groups: pl.DataFrame, metric: str = "ndcg@10", seed: int = 0) -> pl.DataFrame:
    """Long table: method, group, group_order, n, mean, ci_low, ci_high."""
    rows = []
    for r in runs:
        if metric not in r.metrics.columns:
            raise R2BenchError(f"{r.path}: metrics.parquet has no column {metric!r}")
        joined = groups.join(r.metrics.select("instance_id", metric), on="instance_id", how="inner")
        for (g, go), part in joined.group_by("group", "group_order", maintain_order=True):
            m, lo, hi = mean_ci(part[metric].to_numpy(), seed=seed)
            rows.append({"method": r.label, "group": g, "group_order": int(go), "n": part.height,
                         "mean": m, "ci_low": lo, "ci_high": hi})
    return pl.DataFrame(rows).sort("group_order", maintain_order=True)


def wide(long: pl.DataFrame, labels: Sequence[str]) -> pl.DataFrame:
    """group | n | one "mean [lo, hi]" column per method, for display."""
    out = []
    for (g,), part in long.sort("group_order").group_by("group", maintain_order=True):
        row = {"group": g, "n": int(part["n"].max())}
        for lab in labels:
            p = part.filter(pl.col("method") == lab)
            row[lab] = "" if p.height == 0 else f"{fmt(p['mean'][0])} [{fmt(p['ci_low'][0], 3)}, {fmt(p['ci_high'][0], 3)}]"
        out.append(row)
    return pl.DataFrame(out)


def improvements(runs: Sequence[RunRecord], groups: pl.DataFrame, reference: str, metric: str = "ndcg@10") -> pl.DataFrame:
    """group, other, reference mean, other mean, delta, relative %, Wilcoxon p (paired within the group)."""
    by_label = {r.label: r for r in runs}
    if reference not in by_label:
        raise R2BenchError(f"reference method {reference!r} is not among the runs ({', '.join(by_label)})")
    ref = groups.join(by_label[reference].metrics.select("instance_id", pl.col(metric).alias("__ref")), on="instance_id")
    rows = []
    for r in runs:
        if r.label == reference:
            continue
        j = ref.join(r.metrics.select("instance_id", pl.col(metric).alias("__oth")), on="instance_id")
        for (g, go), part in j.group_by("group", "group_order", maintain_order=True):
            a, b = part["__ref"].to_numpy(), part["__oth"].to_numpy()
            delta = float(a.mean() - b.mean())
            rel = 100.0 * delta / b.mean() if b.mean() > 0 else float("nan")
            p = wilcoxon_p(a, b)
            rows.append({"group": g, "group_order": int(go), "other": r.label, "reference": float(a.mean()),
                         "other_mean": float(b.mean()), "delta": delta, "relative_%": rel, "p_wilcoxon": p, "sig": stars(p)})
    if not rows:
        return pl.DataFrame()
    return pl.DataFrame(rows).sort("group_order", "other", maintain_order=True).drop("group_order")


def pick_reference(runs: Sequence[RunRecord], metric: str = "ndcg@10", reference: str | None = None) -> str:
    """The chosen reference, or by default the run with the best overall mean."""
    if reference:
        labels = [r.label for r in runs]
        if reference in labels:
            return reference
        matches = [r.label for r in runs if r.method == reference]
        if len(matches) == 1:
            return matches[0]
        raise R2BenchError(f"reference method {reference!r} is not among the runs ({', '.join(labels)})")
    return max(runs, key=lambda r: float(r.metrics[metric].mean())).label


def _prepare(runs: Sequence[RunRecord], what: str) -> list[RunRecord]:
    base = base_runs(runs)
    if not base:
        raise R2BenchError(f"{what} needs at least one unperturbed, in-domain run")
    check_same_benchmark(base, what)
    return base


def cold_start(runs: Sequence[RunRecord], metric: str = "ndcg@10", n_bins: int = 4,
               fixed_edges: Sequence[int] = strata.DEFAULT_FIXED_EDGES, reference: str | None = None,
               out_dir: str | Path | None = None, benchmark=None, seed: int = 0) -> AnalysisResult:
    """Item cold-start: equal-count frequency bins and fixed groups (paper Figure 3)."""
    base = _prepare(runs, "the cold-start analysis")
    inst, notes = _instances_for(base, benchmark)
    labels = [r.label for r in base]
    ref = pick_reference(base, metric, reference)
    bins = strata.cold_start_bins(inst, n_bins)
    fixed = strata.fixed_frequency_groups(inst, fixed_edges)
    long_bins = per_group(base, bins, metric, seed)
    long_fixed = per_group(base, fixed, metric, seed)
    tables = {
        "bins": wide(long_bins, labels),
        "fixed_groups": wide(long_fixed, labels),
    }
    imp = improvements(base, bins, ref, metric) if len(base) > 1 else pl.DataFrame()
    if imp.height:
        tables["improvement"] = imp
    tables["bins_long"] = long_bins.drop("group_order")
    tables["fixed_groups_long"] = long_fixed.drop("group_order")
    sizes = strata.group_sizes(fixed)
    share = {g: s for g, _, s in sizes.iter_rows()}
    never = share.get("never seen (0)", 0.0)
    summary = (
        f"{metric.upper()} by how often the target item is a positive in train instances, on {inst.height} "
        f"test instances: {n_bins} equal-count bins (ordinal ranks of (frequency, instance id), so one frequency "
        f"can straddle two bins) and fixed groups (never seen / 1-{fixed_edges[-1]} / more). "
        f"{100 * never:.1f}% of targets were never seen in training. Reference for improvements: **{ref}**."
    )
    res = AnalysisResult("cold-start", "Item cold-start", tables, summary, notes=notes,
                         data={"reference": ref, "share_never_seen": never, "n_instances": inst.height})
    if out_dir is not None:
        from r2bench.analyses import plots

        res.figure = plots.cold_start_figure(long_bins, long_fixed, imp, ref, metric, Path(out_dir) / "cold-start.png")
    return res


def history_length(runs: Sequence[RunRecord], metric: str = "ndcg@10",
                   edges: Sequence[int] = strata.DEFAULT_LENGTH_EDGES, out_dir: str | Path | None = None,
                   benchmark=None, seed: int = 0) -> AnalysisResult:
    """NDCG@10 (mean, 95% CI) per history-length group (paper Figure 4a)."""
    base = _prepare(runs, "the history-length analysis")
    inst, notes = _instances_for(base, benchmark)
    groups = strata.history_length_groups(inst, edges)
    long = per_group(base, groups, metric, seed)
    small = long.filter(pl.col("n") < 30)["group"].unique().to_list()
    if small:
        notes.append(f"groups with fewer than 30 instances have wide CIs: {', '.join(sorted(small))}")
    tables = {"groups": wide(long, [r.label for r in base]), "groups_long": long.drop("group_order")}
    summary = (f"{metric.upper()} (mean and 95% bootstrap CI) by the number of history items, "
               f"on {inst.height} test instances.")
    res = AnalysisResult("history-length", "History length", tables, summary, notes=notes,
                         data={"n_instances": inst.height})
    if out_dir is not None:
        from r2bench.analyses import plots

        res.figure = plots.groups_line_figure(long, metric, "history length (items)",
                                              "Recommendation quality by user history length",
                                              Path(out_dir) / "history-length.png")
    return res


STRATIFIED: dict[str, Callable[..., AnalysisResult]] = {
    "cold-start": cold_start,
    "history-length": history_length,
}
