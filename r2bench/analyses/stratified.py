"""What the stratified analyses (item cold-start, history length) share: metrics per group of instances.

They need no new runs: the unperturbed runs of several methods on one benchmark are
split into groups of instances (:mod:`r2bench.analyses.strata`). Per group and method:
the mean of a per-instance metric (NDCG@10 by default) with a 95% bootstrap CI; and
the improvement of a reference method over each other method per group, with a paired
two-sided Wilcoxon test on the group's instances.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from r2bench.analyses.base import base_runs, check_same_benchmark
from r2bench.analyses.stats import mean_ci, stars, wilcoxon_p
from r2bench.errors import R2BenchError
from r2bench.report.render import fmt
from r2bench.runs import Run


def instances_for(runs: Sequence[Run], benchmark=None) -> tuple[pl.DataFrame, list[str]]:
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


def per_group(runs: Sequence[Run], groups: pl.DataFrame, metric: str = "ndcg@10", seed: int = 0) -> pl.DataFrame:
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


def improvements(runs: Sequence[Run], groups: pl.DataFrame, reference: str, metric: str = "ndcg@10") -> pl.DataFrame:
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


def pick_reference(runs: Sequence[Run], metric: str = "ndcg@10", reference: str | None = None) -> str:
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


def originals(runs: Sequence[Run], what: str) -> list[Run]:
    """The unperturbed in-domain runs ``what`` compares, checked to be on one benchmark."""
    base = base_runs(runs)
    if not base:
        raise R2BenchError(f"{what} needs at least one unperturbed, in-domain run")
    check_same_benchmark(base, what)
    return base
