"""Validation of a run's long-form scores against its benchmark split.

A valid ``scores.parquet`` has, for every instance of the split, exactly one row per
candidate of that instance (the same set of 20 item ids, in any order: perturbation
runs reorder candidates), a finite score on each row, and nothing else. Each check
names the first offending instances so a broken run is quick to fix.

The findings themselves (:func:`nonfinite_rows`, :func:`duplicate_pairs`,
:func:`instance_mismatch`, :func:`first_few`) are shared with the leaderboard's entry
validation, which words them for a submitter and reports all of them at once.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from r2bench.errors import RunValidationError
from r2bench.runs import SCORE_SCHEMA

_SHOW = 5


def first_few(ids: pl.Series | list, n: int = _SHOW) -> str:
    """``"a, b, c, d, e (and 7 more)"``: the first ``n`` values, for one-line error messages."""
    vals = list(ids[:n]) if not isinstance(ids, pl.Series) else ids.head(n).to_list()
    total = len(ids)
    more = f" (and {total - n} more)" if total > n else ""
    return ", ".join(str(v) for v in vals) + more


def nonfinite_rows(scores: pl.DataFrame) -> pl.DataFrame:
    """The rows whose score is NaN, infinite or null."""
    return scores.filter(pl.col("score").is_null() | ~pl.col("score").is_finite())


def duplicate_pairs(scores: pl.DataFrame) -> pl.DataFrame:
    """``instance_id, item_id, len`` of every (instance, item) pair scored more than once, in first-seen order."""
    return scores.group_by("instance_id", "item_id", maintain_order=True).len().filter(pl.col("len") > 1)


def instance_mismatch(scores: pl.DataFrame, expected_ids: pl.Series | list) -> tuple[list[int], list[int]]:
    """``(extra, missing)``: scored instance ids that are not expected (sorted), and expected
    ids that were not scored (in the expected order)."""
    want = pl.Series("instance_id", list(expected_ids), dtype=pl.Int64)
    have = scores["instance_id"].cast(pl.Int64).unique()
    return have.filter(~have.is_in(want)).sort().to_list(), want.filter(~want.is_in(have)).to_list()


def normalize_scores(scores: pl.DataFrame, where: str = "scores") -> pl.DataFrame:
    """Check the columns of a long-form score table and cast them to the canonical types."""
    missing = [c for c in SCORE_SCHEMA if c not in scores.columns]
    if missing:
        raise RunValidationError(
            f"{where}: missing column(s) {', '.join(missing)}; expected instance_id, item_id, score"
        )
    try:
        return scores.select(
            pl.col("instance_id").cast(pl.Int64, strict=True),
            pl.col("item_id").cast(pl.String, strict=True),
            pl.col("score").cast(pl.Float64, strict=True),
        )
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as exc:
        raise RunValidationError(f"{where}: columns have the wrong types ({exc})") from None


def expected_pairs(instances: pl.DataFrame) -> pl.DataFrame:
    """One row per (instance_id, item_id) of the candidate lists, in instance order then
    candidate order (row ``i * K + j`` is candidate j of instance i)."""
    k = instances["candidates"].list.len()
    return pl.DataFrame({
        "instance_id": np.repeat(instances["instance_id"].to_numpy().astype(np.int64), k.to_numpy()),
        "item_id": instances["candidates"].explode().cast(pl.String),
    })


def validate_scores(scores: pl.DataFrame, instances: pl.DataFrame, where: str = "scores") -> np.ndarray:
    """Validate ``scores`` against ``instances`` (one split) and return the dense matrix
    ``[n, K]`` aligned with ``instances`` sorted by instance_id and their candidate order.

    Fast paths: a run in the benchmark's own order is checked by elementwise equality;
    any other order by grouping rows by instance and comparing sorted item codes per
    instance (:func:`_align_any_order`). Only a run that fails both is diagnosed in
    detail; the error names the first offending instances. Raises RunValidationError.
    """
    scores = normalize_scores(scores, where)
    instances = instances.sort("instance_id")
    n = instances.height
    lens = instances["candidates"].list.len()
    k = int(lens.max()) if n else 0
    if n and int(lens.min()) != k:
        raise RunValidationError(f"{where}: the benchmark's instances have different numbers of candidates")

    bad = nonfinite_rows(scores)
    if bad.height:
        ids = bad["instance_id"].unique(maintain_order=True)
        raise RunValidationError(
            f"{where}: {bad.height} non-finite score(s) (NaN, inf or null) in instance(s) {first_few(ids)}"
        )
    if scores["instance_id"].null_count() or scores["item_id"].null_count():
        raise RunValidationError(f"{where}: null instance_id or item_id")

    pairs = expected_pairs(instances)
    if scores.height == pairs.height:
        if scores["instance_id"].equals(pairs["instance_id"]) and scores["item_id"].equals(pairs["item_id"]):
            return scores["score"].to_numpy().reshape(n, k)
        dense = _align_any_order(scores, instances, pairs, n, k)
        if dense is not None:
            return dense
    _diagnose(scores, instances, pairs, where)
    raise RunValidationError(f"{where}: the scored (instance, item) pairs differ from the benchmark's candidates")


def _align_any_order(scores: pl.DataFrame, instances: pl.DataFrame, pairs: pl.DataFrame, n: int,
                     k: int) -> np.ndarray | None:
    """Dense scores for a run whose rows are in any order, or None when its (instance,
    item) pairs are not exactly the candidates.

    Item ids are encoded through one Enum; rows are stably sorted by instance_id (a
    numeric sort), so each instance must own exactly the block of K rows it owns in
    the benchmark; within a block, sorted item codes must equal the sorted candidate
    codes (the candidates are distinct, so this also excludes duplicates)."""
    enum = pl.Enum(pairs["item_id"].unique().sort())
    s_codes = scores["item_id"].cast(enum, strict=False).to_physical()
    if s_codes.null_count():
        return None  # an item that is no instance's candidate
    cand = pairs["item_id"].cast(enum).to_physical().to_numpy().astype(np.int64).reshape(n, k)
    ordered = pl.DataFrame({"i": scores["instance_id"], "c": s_codes, "s": scores["score"]})
    if not ordered["i"].equals(pairs["instance_id"]):  # rows not grouped like the benchmark: sort
        ordered = ordered.sort("i", maintain_order=True)
    if not np.array_equal(ordered["i"].to_numpy(), pairs["instance_id"].to_numpy()):
        return None  # missing / extra instances or wrong counts
    codes = ordered["c"].to_numpy().astype(np.int64).reshape(n, k)
    vals = ordered["s"].to_numpy().reshape(n, k)
    ro = np.argsort(codes, axis=1)
    co = np.argsort(cand, axis=1)
    if not np.array_equal(np.take_along_axis(codes, ro, axis=1), np.take_along_axis(cand, co, axis=1)):
        return None  # another item set (or a duplicate) in some instance
    dense = np.empty((n, k), dtype=np.float64)
    np.put_along_axis(dense, co, np.take_along_axis(vals, ro, axis=1), axis=1)
    return dense


def _diagnose(scores: pl.DataFrame, instances: pl.DataFrame, pairs: pl.DataFrame, where: str) -> None:
    """Raise the most specific error for a run whose pairs differ from the candidates."""
    dup = duplicate_pairs(scores)
    if dup.height:
        first = dup.row(0, named=True)
        raise RunValidationError(
            f"{where}: duplicate rows for {dup.height} (instance, item) pair(s), first: instance "
            f"{first['instance_id']} item {first['item_id']!r} appears {first['len']} times; "
            f"instances: {first_few(dup['instance_id'].unique(maintain_order=True))}"
        )

    extra, missing = instance_mismatch(scores, instances["instance_id"])
    if extra:
        raise RunValidationError(
            f"{where}: {len(extra)} instance(s) that are not in the benchmark split: {first_few(extra)}"
        )
    if missing:
        raise RunValidationError(
            f"{where}: {len(missing)} instance(s) of the split have no scores: {first_few(missing)}"
        )

    counts = scores.group_by("instance_id").len()
    want_counts = instances.select("instance_id", pl.col("candidates").list.len().alias("k"))
    wrong = (
        want_counts.join(counts, on="instance_id", how="left")
        .filter(pl.col("len") != pl.col("k"))
        .sort("instance_id")
    )
    if wrong.height:
        r = wrong.row(0, named=True)
        raise RunValidationError(
            f"{where}: {wrong.height} instance(s) do not have exactly their {r['k']} candidates scored; "
            f"first: instance {r['instance_id']} has {r['len']} rows; instances: {first_few(wrong['instance_id'])}"
        )

    stray = scores.join(pairs, on=["instance_id", "item_id"], how="anti").sort("instance_id")
    if stray.height:
        r = stray.row(0, named=True)
        raise RunValidationError(
            f"{where}: {stray.height} scored item(s) are not candidates of their instance; first: "
            f"item {r['item_id']!r} in instance {r['instance_id']}; instances: "
            f"{first_few(stray['instance_id'].unique(maintain_order=True))}"
        )
