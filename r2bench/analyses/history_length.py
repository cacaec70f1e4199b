"""History length (paper Figure 4a): quality by the number of history items.

From the unperturbed runs of several methods on one benchmark (no new runs): NDCG@10
(mean, 95% bootstrap CI) per method in history-length groups (1-5, 6-10, 11-15, 16-20
items by default, :func:`r2bench.analyses.strata.history_length_groups`).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from r2bench.analyses import plots, strata
from r2bench.analyses.base import Analysis, methods_of, one_benchmark_originals, plot_with
from r2bench.analyses.result import AnalysisResult
from r2bench.analyses.stratified import instances_for, originals, per_group, wide
from r2bench.runs import Run


def history_length(runs: Sequence[Run], metric: str = "ndcg@10",
                   edges: Sequence[int] = strata.DEFAULT_LENGTH_EDGES, benchmark=None,
                   seed: int = 0) -> AnalysisResult:
    """NDCG@10 (mean, 95% CI) per history-length group (paper Figure 4a)."""
    base = originals(runs, "the history-length analysis")
    inst, notes = instances_for(base, benchmark)
    groups = strata.history_length_groups(inst, edges)
    long = per_group(base, groups, metric, seed)
    small = long.filter(pl.col("n") < 30)["group"].unique().to_list()
    if small:
        notes.append(f"groups with fewer than 30 instances have wide CIs: {', '.join(sorted(small))}")
    tables = {"groups": wide(long, [r.label for r in base]), "groups_long": long.drop("group_order")}
    summary = (f"{metric.upper()} (mean and 95% bootstrap CI) by the number of history items, "
               f"on {inst.height} test instances.")
    return AnalysisResult("history-length", "History length", tables, summary, notes=notes,
                          data={"n_instances": inst.height},
                          plot_data={"long": long, "metric": metric, "xlabel": "history length (items)",
                                     "title": "Recommendation quality by user history length",
                                     "method_of": methods_of(base)})


ANALYSIS = Analysis(
    name="history-length", title="History length", paper="Figure 4a", order=20,
    compute=lambda runs, opts, skipped: history_length(runs, opts.metric, opts.length_edges, seed=opts.seed),
    draw=plot_with(plots.groups_line_figure),
    original="base",
    applies=one_benchmark_originals,
)
