"""History truncation (paper Figure 4b): quality with only the k most recent history items kept.

Per method and ``k``, the mean metric (95% bootstrap CI) on the fixed sample of
full-length histories the perturbation spec names, and the change against the longest
``k`` (paired Wilcoxon). The runs score only that sample (``select``), so every ``k``
is measured on the same instances.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from r2bench.analyses import perturb as P
from r2bench.analyses import plots
from r2bench.analyses.base import Analysis, full_length_for, has_kind, methods_of, plot_with
from r2bench.analyses.pairing import aligned, by_label, score_difference
from r2bench.analyses.result import AnalysisResult
from r2bench.analyses.stats import mean_ci, wilcoxon_p
from r2bench.errors import R2BenchError
from r2bench.runs import Run


def history_truncation(runs: Sequence[Run], metric: str = "ndcg@10", seed: int = 0) -> AnalysisResult:
    groups = by_label(runs, "history_truncate")
    if not groups:
        raise R2BenchError("the truncation analysis needs runs with perturbation kind 'history_truncate'")
    rows, notes = [], []
    samples = set()
    for label, rs in groups.items():
        rs = sorted(rs, key=lambda r: int(r.perturbation["k"]))
        ks = [int(r.perturbation["k"]) for r in rs]
        samples.add(str(rs[0].perturbation.get("sample")))
        ids, arrays = aligned(rs, metric)
        if len(ids) < max(r.metrics.height for r in rs):
            notes.append(f"{label}: the truncation runs do not all cover the same instances; compared on the {len(ids)} shared")
        full = arrays[-1]
        for k, r, a in zip(ks, rs, arrays):
            m, lo, hi = mean_ci(a, seed=seed)
            same = score_difference(rs[-1], r)["invariant"] if r is not rs[-1] else True
            rows.append({"method": label, "k": k, "n": len(a), "mean": m, "ci_low": lo, "ci_high": hi,
                         f"delta_vs_k{ks[-1]}": float(a.mean() - full.mean()),
                         "p_wilcoxon": wilcoxon_p(a, full) if r is not rs[-1] else float("nan"),
                         f"scores_same_as_k{ks[-1]}": same})
    if len(samples) > 1:
        notes.append(f"runs used different instance samples: {sorted(samples)}")
    table = pl.DataFrame(rows)
    long = table.rename({"k": "group"}).with_columns(pl.col("group").cast(pl.Int64).alias("group_order"),
                                                    pl.col("group").cast(pl.String))
    spec = next(iter(groups.values()))[0].perturbation.get("sample")
    n_inst = int(table["n"].max()) if table.height else 0
    if isinstance(spec, dict):
        smp = (f"{n_inst} instances: a seeded sample (seed {spec.get('seed', 0)}) of up to "
               f"{spec.get('n') or 'all'} among those whose history has the full {spec.get('full_length', 20)} items")
    else:
        smp = f"{n_inst} instances"
    text = (f"Only the k most recent history items are kept, on the same {smp}; {metric.upper()} mean and 95% "
            f"bootstrap CI per k, and the change against the longest k (paired Wilcoxon).")
    return AnalysisResult("truncation", "History truncation", {"truncation": table}, text, notes=notes,
                          plot_data={"long": long, "metric": metric, "xlabel": "most recent history items kept (k)",
                                     "title": "Recommendation quality vs history kept", "numeric_x": True,
                                     "method_of": methods_of(runs)})


ANALYSIS = Analysis(
    name="truncation", title="History truncation", paper="Figure 4b", order=50,
    compute=lambda runs, opts, skipped: history_truncation(runs, opts.metric, seed=opts.seed),
    draw=plot_with(plots.groups_line_figure),
    original=None,
    perturbations=lambda opts, bench: [P.history_truncate_spec(k, opts.sample_n, full_length_for(bench, opts), opts.seed)
                                       for k in sorted(opts.ks)],
    applies=has_kind("history_truncate"),
)
