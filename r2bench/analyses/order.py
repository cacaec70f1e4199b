"""Candidate-order analyses: position bias (paper Figure 5) and candidate shuffling.

Both compare runs of one method on the same instances whose candidate lists were
reordered (``perturbation.kind`` = ``target_position`` / ``candidate_shuffle``).

- **Position sensitivity** of a method = the spread (max - min) of the mean predicted
  rank of the target across the target positions tested, in ranks (0 = none; with
  K = 20 candidates it can reach 19). It comes with a paired Friedman test across
  positions (three or more) and a paired Wilcoxon test between the first and the
  last position.
- **Permutation invariance**: the per-(instance, candidate) scores of the reordered
  runs are compared with each other; identical scores (to a relative 1e-6) mean the
  method ignores candidate order. Methods that declare themselves pointwise
  (``BaseMethod.pointwise``) must be invariant; a violation is reported loudly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from r2bench.analyses.result import AnalysisResult
from r2bench.analyses.runs_io import RunRecord
from r2bench.analyses.stats import friedman_p, mean_ci, wilcoxon_p
from r2bench.errors import R2BenchError

RTOL = 1e-6
ATOL = 1e-9


def declared_pointwise(run: RunRecord) -> bool | None:
    """Whether the run's method declares itself pointwise: recorded in run.json's info by
    the analyses' runner, else the registered class attribute (None when unknown)."""
    info = run.meta.get("info") or {}
    if "method_pointwise" in info:
        return bool(info["method_pointwise"])
    try:
        from r2bench.methods import method_class

        value = getattr(method_class(run.method), "pointwise", None)
        return None if value is None else bool(value)
    except Exception:  # unregistered third-party method, missing extra: not decisive
        return None


def score_difference(a: RunRecord, b: RunRecord) -> dict[str, float]:
    """Compare two runs' scores per (instance, candidate) on the instances both scored.

    Returns max_abs_diff, share_changed (instances with any candidate's score changed)
    and invariant (bool).
    """
    j = a.scores.join(b.scores, on=["instance_id", "item_id"], how="inner", suffix="_b")
    if j.height == 0:
        raise R2BenchError(f"runs {a.run_id} and {b.run_id} share no (instance, candidate) pair")
    x, y = j["score"].to_numpy(), j["score_b"].to_numpy()
    close = np.isclose(x, y, rtol=RTOL, atol=ATOL)
    changed = j.with_columns(pl.Series("__chg", ~close)).group_by("instance_id").agg(pl.col("__chg").any())
    return {
        "max_abs_diff": float(np.max(np.abs(x - y))) if x.size else 0.0,
        "share_changed": float(changed["__chg"].mean()),
        "invariant": bool(close.all()),
    }


def _aligned(runs: Sequence[RunRecord], metric: str) -> tuple[list[int], list[np.ndarray]]:
    common = None
    for r in runs:
        ids = set(r.metrics["instance_id"].to_list())
        common = ids if common is None else common & ids
    ids = sorted(common or ())
    arrays = []
    for r in runs:
        m = r.metrics.filter(pl.col("instance_id").is_in(ids)).sort("instance_id")
        arrays.append(m[metric].to_numpy().astype(np.float64))
    return ids, arrays


def _by_label(runs: Sequence[RunRecord], kind: str) -> dict[str, list[RunRecord]]:
    out: dict[str, list[RunRecord]] = {}
    for r in runs:
        if r.kind == kind:
            out.setdefault(r.label, []).append(r)
    return out


def position_bias(runs: Sequence[RunRecord], out_dir: str | Path | None = None, seed: int = 0) -> AnalysisResult:
    """Distribution of the target's predicted rank per target position, per method."""
    groups = _by_label(runs, "target_position")
    if not groups:
        raise R2BenchError("the position analysis needs runs with perturbation kind 'target_position' "
                           "(r2bench analyze position --method M --dataset D makes them)")
    detail, summary_rows, dists, notes = [], [], {}, []
    for label, rs in groups.items():
        rs = sorted(rs, key=lambda r: int(r.perturbation["position"]))
        positions = [int(r.perturbation["position"]) for r in rs]
        if len(set(positions)) != len(positions):
            raise R2BenchError(f"{label}: several runs with the same target position {positions}")
        ids, ranks = _aligned(rs, "target_rank")
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
    res = AnalysisResult("position", "Candidate position bias", {"summary": summary, "ranks": pl.DataFrame(detail)},
                         text, notes=notes,
                         data={"sensitivity": {r["method"]: r["sensitivity_ranks"] for r in summary_rows},
                               "invariant": {r["method"]: r["permutation_invariant"] for r in summary_rows}})
    if out_dir is not None:
        from r2bench.analyses import plots

        res.figure = plots.position_figure(dists, Path(out_dir) / "position.png",
                                           {r["method"]: r["sensitivity_ranks"] for r in summary_rows})
    return res


def candidate_shuffle(runs: Sequence[RunRecord], metric: str = "ndcg@10", out_dir: str | Path | None = None,
                      seed: int = 0) -> AnalysisResult:
    """Permutation-invariance check: the original order against seeded candidate shuffles."""
    shuffled = _by_label(runs, "candidate_shuffle")
    originals = {r.label: r for r in runs if r.perturbation is None and r.train_on is None}
    if not shuffled:
        raise R2BenchError("the candidate-shuffle analysis needs runs with perturbation kind 'candidate_shuffle'")
    rows, notes, bars = [], [], []
    for label, rs in shuffled.items():
        orig = originals.get(label)
        if orig is None:
            raise R2BenchError(f"{label}: candidate-shuffled runs but no original (unperturbed) run to compare with")
        declared = declared_pointwise(orig)
        for r in sorted(rs, key=lambda r: int(r.perturbation.get("seed", 0))):
            d = score_difference(orig, r)
            _, (a, b) = _aligned([orig, r], metric)
            ma, mb = float(a.mean()), float(b.mean())
            rows.append({"method": label, "seed": int(r.perturbation.get("seed", 0)), "n": len(a),
                         "original": ma, "shuffled": mb, "delta": mb - ma, "p_wilcoxon": wilcoxon_p(a, b),
                         "max_abs_score_diff": d["max_abs_diff"], "share_instances_changed": d["share_changed"],
                         "declared_pointwise": declared, "permutation_invariant": d["invariant"]})
            bars.append((label, r.perturbation.get("seed", 0), mean_ci(a, seed=seed), mean_ci(b, seed=seed), d["invariant"]))
            if declared and not d["invariant"]:
                notes.append(f"VIOLATION: {label} declares itself pointwise but its scores change when candidates are shuffled "
                             f"(seed {r.perturbation.get('seed')}, max |diff| {d['max_abs_diff']:.3g})")
    table = pl.DataFrame(rows)
    text = (f"Each candidate list is shuffled with a seeded permutation and the method re-scores the same instances. "
            f"Permutation invariant = every candidate keeps its score (relative tolerance {RTOL:g}). "
            f"{metric.upper()} is shown for the original and the shuffled order with a paired Wilcoxon test.")
    res = AnalysisResult("candidate-shuffle", "Candidate shuffling (permutation invariance)", {"invariance": table}, text,
                         notes=notes, data={"invariant": {r["method"]: r["permutation_invariant"] for r in rows}})
    if out_dir is not None:
        from r2bench.analyses import plots

        res.figure = plots.candidate_shuffle_figure(bars, metric, Path(out_dir) / "candidate-shuffle.png")
    return res
