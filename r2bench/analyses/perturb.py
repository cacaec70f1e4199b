"""Perturbations: pure functions ``instances -> instances`` and the specs that name them.

Each perturbation is described by a small JSON-able dict (its *spec*), recorded in
``run.json`` as ``perturbation`` so that any perturbed run can be re-created and
grouped by the analyses:

``{"kind": "target_position", "position": p}``
    the target moves to position ``p`` (1-based) of the candidate list; the other
    candidates keep their relative order (paper section 4.5.1, Figure 5).
``{"kind": "history_shuffle", "seed": s}``
    each history is permuted by its own seeded permutation (Table 7). Timestamps
    travel with their items, so an (item, time) pair is never split.
``{"kind": "history_truncate", "k": k, "sample": {"n": n, "full_length": L, "seed": s}}``
    only the most recent ``k`` history items are kept, on a fixed seeded sample of
    ``n`` instances whose history has exactly ``L`` items (Figure 4b). The sample
    depends only on the instances and ``(n, L, seed)``, never on ``k``, so every
    ``k`` is measured on the same instances. ``"sample": null`` truncates all.
``{"kind": "candidate_shuffle", "seed": s}``
    each candidate list is permuted by its own seeded permutation (the
    permutation-invariance check).

Per-instance randomness is seeded by ``(seed, instance_id)``, so an instance gets
the same permutation whatever subset (``--limit``) it is scored in.
``target_index`` is always kept consistent with ``candidates``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

from r2bench.errors import R2BenchError

KINDS = ("target_position", "history_shuffle", "history_truncate", "candidate_shuffle")


def _rng(seed: int, instance_id: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(instance_id) & 0xFFFFFFFFFFFF])


def _gather(instances: pl.DataFrame, columns: list[str], orders: list[list[int]]) -> pl.DataFrame:
    """Reorder list ``columns`` of every row by the row's index list in ``orders``."""
    order = pl.Series("__order", orders, dtype=pl.List(pl.Int64))
    return (
        instances.with_columns(order)
        .with_columns([pl.col(c).list.gather(pl.col("__order")) for c in columns if c in instances.columns])
        .drop("__order")
    )


def _n_candidates(instances: pl.DataFrame) -> int:
    lengths = instances["candidates"].list.len().unique().to_list()
    if len(lengths) > 1:
        raise R2BenchError(f"instances have candidate lists of different lengths: {sorted(lengths)}")
    return int(lengths[0]) if lengths else 0


def move_target(instances: pl.DataFrame, position: int) -> pl.DataFrame:
    """Put the target at ``position`` (1-based); the other candidates keep their order."""
    if instances.height == 0:
        return instances
    k = _n_candidates(instances)
    if not 1 <= int(position) <= k:
        raise R2BenchError(f"target position must be between 1 and {k}, got {position}")
    t = instances["target_index"].to_numpy().astype(np.int64)[:, None]
    idx = np.arange(k)[None, :]
    # Others are keyed by their rank among the others; the target by position - 1.5,
    # so exactly position - 1 others sort before it.
    keys = np.where(idx == t, position - 1.5, (idx - (idx > t)).astype(float))
    order = np.argsort(keys, axis=1, kind="stable")
    out = _gather(instances, ["candidates"], order.tolist())
    return out.with_columns(pl.lit(position - 1, dtype=instances.schema["target_index"]).alias("target_index"))


def shuffle_candidates(instances: pl.DataFrame, seed: int) -> pl.DataFrame:
    """A seeded random permutation of each candidate list (target_index follows)."""
    if instances.height == 0:
        return instances
    k = _n_candidates(instances)
    ids = instances["instance_id"].to_list()
    orders = [_rng(seed, i).permutation(k) for i in ids]
    t = instances["target_index"].to_numpy().astype(np.int64)
    new_t = [int(np.flatnonzero(o == ti)[0]) for o, ti in zip(orders, t)]
    out = _gather(instances, ["candidates"], [o.tolist() for o in orders])
    return out.with_columns(pl.Series("target_index", new_t, dtype=instances.schema["target_index"]))


def shuffle_history(instances: pl.DataFrame, seed: int) -> pl.DataFrame:
    """A seeded random permutation of each history (timestamps move with their items)."""
    if instances.height == 0:
        return instances
    ids = instances["instance_id"].to_list()
    lengths = instances["history"].list.len().to_list()
    orders = [_rng(seed, i).permutation(n).tolist() for i, n in zip(ids, lengths)]
    return _gather(instances, ["history", "history_timestamps"], orders)


def full_history_sample(instances: pl.DataFrame, n: int | None, full_length: int = 20, seed: int = 0) -> pl.DataFrame:
    """A fixed seeded sample of ``n`` instances whose history has exactly ``full_length`` items.

    The result is sorted by instance_id. ``n=None`` keeps every full-length instance;
    if fewer than ``n`` exist, all of them are kept.
    """
    full = instances.filter(pl.col("history").list.len() == full_length).sort("instance_id")
    if full.height == 0:
        lengths = instances["history"].list.len()
        longest = int(lengths.max()) if instances.height else 0
        raise R2BenchError(
            f"no instance has a history of exactly {full_length} items (longest: {longest}); "
            f"lower the full length (--full-length) for this benchmark"
        )
    if n is None or n >= full.height:
        return full
    rows = np.sort(np.random.default_rng(seed).choice(full.height, size=int(n), replace=False))
    return full[rows.tolist()]


def truncate_history(instances: pl.DataFrame, k: int) -> pl.DataFrame:
    """Keep only the ``k`` most recent history items (and their timestamps)."""
    if int(k) < 0:
        raise R2BenchError(f"history truncation needs k >= 0, got {k}")
    cols = [c for c in ("history", "history_timestamps") if c in instances.columns]
    return instances.with_columns([pl.col(c).list.tail(int(k)) for c in cols])


# --- specs -----------------------------------------------------------------------------

def target_position_spec(position: int) -> dict[str, Any]:
    return {"kind": "target_position", "position": int(position)}


def history_shuffle_spec(seed: int) -> dict[str, Any]:
    return {"kind": "history_shuffle", "seed": int(seed)}


def history_truncate_spec(k: int, n: int | None = 100, full_length: int = 20, seed: int = 0,
                          sample: bool = True) -> dict[str, Any]:
    smp = {"n": n, "full_length": int(full_length), "seed": int(seed)} if sample else None
    return {"kind": "history_truncate", "k": int(k), "sample": smp}


def candidate_shuffle_spec(seed: int) -> dict[str, Any]:
    return {"kind": "candidate_shuffle", "seed": int(seed)}


def apply_perturbation(instances: pl.DataFrame, spec: dict[str, Any] | None) -> pl.DataFrame:
    """Apply the perturbation a spec describes (``None`` returns the instances unchanged)."""
    if not spec:
        return instances
    kind = spec.get("kind")
    if kind == "target_position":
        return move_target(instances, int(spec["position"]))
    if kind == "history_shuffle":
        return shuffle_history(instances, int(spec["seed"]))
    if kind == "history_truncate":
        smp = spec.get("sample")
        if smp:
            instances = full_history_sample(instances, smp.get("n"), int(smp.get("full_length", 20)), int(smp.get("seed", 0)))
        return truncate_history(instances, int(spec["k"]))
    if kind == "candidate_shuffle":
        return shuffle_candidates(instances, int(spec["seed"]))
    raise R2BenchError(f"unknown perturbation kind {kind!r}; expected one of {', '.join(KINDS)}")


def scored_instances(instances: pl.DataFrame, spec: dict[str, Any] | None) -> pl.DataFrame:
    """The instances a run with this perturbation scored, from the split's instances.

    The identity, except for truncation specs with a sample: their runs score only the
    sample, drawn from the first ``sample.pool_limit`` instances (all when null). The run
    records the ids it scored (``scored_instance_ids``), so the evaluator does not need this.
    """
    smp = (spec or {}).get("sample") if (spec or {}).get("kind") == "history_truncate" else None
    if not smp:
        return instances
    pool = instances.sort("instance_id")
    if smp.get("pool_limit") is not None:
        pool = pool.head(int(smp["pool_limit"]))
    return full_history_sample(pool, smp.get("n"), int(smp.get("full_length", 20)), int(smp.get("seed", 0)))


def select_instances(instances: pl.DataFrame, spec: dict[str, Any],
                     limit: int | None = None) -> tuple[dict[str, Any], list[int] | None]:
    """The instances a perturbed run scores, when not the first ``limit`` of the split.

    Truncation specs with a sample score only the sample, drawn from the first
    ``limit`` instances (all when None); the spec records that pool
    (``sample.pool_limit``), so the same spec always names the same instances.
    Returns ``(spec, instance_ids)``, or ``(spec, None)`` for every other spec.
    """
    if spec.get("kind") == "history_truncate" and spec.get("sample"):
        spec = dict(spec, sample=dict(spec["sample"], pool_limit=limit))
        return spec, scored_instances(instances, spec)["instance_id"].to_list()
    return spec, None


def perturbation_fn(spec: dict[str, Any]) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """The callable form of a spec, as ``run_method(perturb=...)`` takes it."""
    if spec.get("kind") not in KINDS:
        raise R2BenchError(f"unknown perturbation kind {spec.get('kind')!r}; expected one of {', '.join(KINDS)}")

    def fn(instances: pl.DataFrame) -> pl.DataFrame:
        return apply_perturbation(instances, spec)

    return fn


def describe(spec: dict[str, Any] | None) -> str:
    """A short human label for a spec (used in tables and legends)."""
    if not spec:
        return "original"
    kind = spec.get("kind")
    if kind == "target_position":
        return f"target at position {spec['position']}"
    if kind == "history_shuffle":
        return f"history shuffled (seed {spec['seed']})"
    if kind == "history_truncate":
        return f"history truncated to {spec['k']}"
    if kind == "candidate_shuffle":
        return f"candidates shuffled (seed {spec['seed']})"
    return str(spec)
