"""Pairing runs of one method on the same instances: aligned metrics, score differences, grouping by label.

Used by the analyses of perturbed runs (position, candidate shuffling, history shuffling
and truncation): each compares a method's runs on copies of the same instances.
Runs are paired by their analysis label (:func:`r2bench.runs.run_labels`, scheme
``"analysis"``), which a run shares with its perturbed copies.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from r2bench.errors import R2BenchError
from r2bench.runs import Run

RTOL = 1e-6
ATOL = 1e-9


def declared_pointwise(run: Run) -> bool | None:
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


def score_difference(a: Run, b: Run) -> dict[str, float]:
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


def aligned(runs: Sequence[Run], metric: str) -> tuple[list[int], list[np.ndarray]]:
    """The instance ids every run scored, and each run's ``metric`` on them (same order)."""
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


def by_label(runs: Sequence[Run], kind: str) -> dict[str, list[Run]]:
    """Runs of perturbation ``kind``, grouped by label (in order of first appearance)."""
    out: dict[str, list[Run]] = {}
    for r in runs:
        if r.kind == kind:
            out.setdefault(r.label, []).append(r)
    return out


def originals_by_label(runs: Sequence[Run]) -> dict[str, Run]:
    """The unperturbed in-domain run of each label."""
    return {r.label: r for r in runs if r.perturbation is None and r.train_on is None}
