"""Candidate position bias (paper Figure 5): the target moved to positions 1, 10, 20 of the candidate list.

**Position sensitivity** of a method = the spread (max - min) of the mean predicted
rank of the target across the target positions tested, in ranks (0 = none; with
K = 20 candidates it can reach 19). It comes with a paired Friedman test across
positions (three or more) and a paired Wilcoxon test between the first and the last
position. The runs are also checked for **permutation invariance**: their
per-(instance, candidate) scores are compared with each other; identical scores (to a
relative 1e-6) mean the method ignores candidate order. Methods that declare
themselves pointwise (``BaseMethod.pointwise``) must be invariant; a violation is
reported loudly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from r2bench.analyses import perturb as P
from r2bench.analyses import plots
from r2bench.analyses.base import Analysis, has_kind, methods_of, plot_with
from r2bench.analyses.pairing import aligned, by_label, declared_pointwise, score_difference
from r2bench.analyses.result import AnalysisResult
from r2bench.analyses.stats import friedman_p, mean_ci, wilcoxon_p
from r2bench.errors import R2BenchError
from r2bench.runs import Run


def position_bias(runs: Sequence[Run], seed: int = 0) -> AnalysisResult:
    """Distribution of the target's predicted rank per target position, per method."""
    groups = by_label(runs, "target_position")
    if not groups:
        raise R2BenchError("the position analysis needs runs with perturbation kind 'target_position' "
                           "(r2bench analyze position --method M --dataset D makes them)")
    detail, summary_rows, dists, notes = [], [], {}, []
    for label, rs in groups.items():
        rs = sorted(rs, key=lambda r: int(r.perturbation["position"]))
        positions = [int(r.perturbation["position"]) for r in rs]
        if len(set(positions)) != len(positions):
            raise R2BenchError(f"{label}: several runs with the same target position {positions}")
        ids, ranks = aligned(rs, "target_rank")
        means = []
        for p, rk in zip(positions, ranks):
            m, lo, hi = mean_ci(rk, seed=seed)
            means.append(m)
            detail.append({"method": label, "position": p, "n": len(rk), "mean_rank": m, "ci_low": lo, "ci_high": hi,
                           "median_rank": float(np.median(rk)), "top1_share": float(np.mean(rk <= 1.0))})
        dists[label] = dict(zip(positions, ranks))
        inv = all(score_difference(rs[0], r)["invariant"] for r in rs[1:]) if len(rs) > 1 else None
        declared = declared_pointwise(rs[0])
        spread = float(max(means) - min(means)) if means else float("nan")
        row = {
            "method": label, "declared_pointwise": declared, "permutation_invariant": inv,
            "positions": ",".join(map(str, positions)), "n": len(ids),
            "sensitivity_ranks": spread,
            "friedman_p": friedman_p(*ranks) if len(ranks) >= 3 else float("nan"),
            "wilcoxon_p_first_last": wilcoxon_p(ranks[0], ranks[-1]) if len(ranks) >= 2 else float("nan"),
        }
        if declared and inv is False:
            notes.append(f"VIOLATION: {label} declares itself pointwise but its scores change with candidate order")
            row["check"] = "FAIL (declared pointwise, not invariant)"
        elif declared and inv:
            row["check"] = "ok (pointwise, invariant)"
        else:
            row["check"] = "n/a (listwise)" if declared is False else "n/a"
        summary_rows.append(row)
    summary = pl.DataFrame(summary_rows)
    text = ("The target is moved to each position of the candidate list (others keep their order) and the "
            "method re-scores the same instances. **Position sensitivity** = max - min over positions of the "
            "mean predicted rank of the target (ranks; 0 = none), with a Friedman test across positions and a "
            "Wilcoxon test between the first and last position. Pointwise methods must be permutation "
            "invariant (identical scores per candidate whatever the order); r2bench checks it.")
    sensitivity = {r["method"]: r["sensitivity_ranks"] for r in summary_rows}
    return AnalysisResult("position", "Candidate position bias", {"summary": summary, "ranks": pl.DataFrame(detail)},
                          text, notes=notes,
                          data={"sensitivity": sensitivity,
                                "invariant": {r["method"]: r["permutation_invariant"] for r in summary_rows}},
                          plot_data={"dists": dists, "sensitivity": sensitivity, "method_of": methods_of(runs)})


ANALYSIS = Analysis(
    name="position", title="Candidate position bias", paper="Figure 5", order=30,
    compute=lambda runs, opts, skipped: position_bias(runs, seed=opts.seed),
    draw=plot_with(plots.position_figure),
    original=None,
    perturbations=lambda opts, bench: [P.target_position_spec(p) for p in opts.positions],
    applies=has_kind("target_position"),
)
