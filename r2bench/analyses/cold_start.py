"""Item cold-start (paper Figure 3): quality by how often the target item was a positive in training.

From the unperturbed runs of several methods on one benchmark (no new runs): NDCG@10
(mean, 95% bootstrap CI) per method in equal-count bins of the target's train
frequency (:func:`r2bench.analyses.strata.cold_start_bins`) and in fixed groups (never
seen / 1-5 / more); and the improvement of a reference method (``--reference``, default
the best overall) over each other method per bin, with a paired Wilcoxon test.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from r2bench.analyses import plots, strata
from r2bench.analyses.base import Analysis, methods_of, one_benchmark_originals, plot_with
from r2bench.analyses.result import AnalysisResult
from r2bench.analyses.stratified import improvements, instances_for, originals, per_group, pick_reference, wide
from r2bench.runs import Run


def cold_start(runs: Sequence[Run], metric: str = "ndcg@10", n_bins: int = 4,
               fixed_edges: Sequence[int] = strata.DEFAULT_FIXED_EDGES, reference: str | None = None,
               benchmark=None, seed: int = 0) -> AnalysisResult:
    """Item cold-start: equal-count frequency bins and fixed groups (paper Figure 3)."""
    base = originals(runs, "the cold-start analysis")
    inst, notes = instances_for(base, benchmark)
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
    return AnalysisResult("cold-start", "Item cold-start", tables, summary, notes=notes,
                          data={"reference": ref, "share_never_seen": never, "n_instances": inst.height},
                          plot_data={"long_bins": long_bins, "long_fixed": long_fixed, "imp": imp, "ref": ref,
                                     "metric": metric, "method_of": methods_of(base)})


ANALYSIS = Analysis(
    name="cold-start", title="Item cold-start", paper="Figure 3", order=10,
    compute=lambda runs, opts, skipped: cold_start(runs, opts.metric, opts.n_bins, opts.fixed_edges, opts.reference,
                                                   seed=opts.seed),
    draw=plot_with(plots.cold_start_figure),
    original="base",
    applies=one_benchmark_originals,
)
