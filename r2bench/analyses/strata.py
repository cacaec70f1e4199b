"""Stratifications of instances: item cold-start bins and history-length groups.

Every function takes an instances frame and returns ``instance_id, group, group_order``
(one row per instance), so any per-instance metrics table can be joined and
aggregated per group.

Cold-start quartiles (paper Figure 3a/b) are **equal-count bins by rank**: instances
are ordered by ``(target_train_freq, instance_id)`` and the ``i``-th of ``n`` goes to
bin ``floor(i * n_bins / n)``. Bins therefore differ in size by at most one even when
many targets share a frequency (typically 0); the price is that one frequency value
can straddle two adjacent bins. Each bin's label shows the frequency range it covers,
so a straddled value is visible in the table.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from r2bench.errors import R2BenchError

DEFAULT_FIXED_EDGES = (0, 5)  # never seen (0); 1-5; more than 5 (paper Figure 3c)
DEFAULT_LENGTH_EDGES = (5, 10, 15, 20)  # 1-5, 6-10, 11-15, 16-20 (paper Figure 4a)


def _frame(instances: pl.DataFrame, labels: Sequence[str], order: Sequence[int]) -> pl.DataFrame:
    return pl.DataFrame({
        "instance_id": instances["instance_id"].cast(pl.Int64),
        "group": pl.Series(list(labels), dtype=pl.String),
        "group_order": pl.Series(list(order), dtype=pl.Int64),
    })


def cold_start_bins(instances: pl.DataFrame, n_bins: int = 4) -> pl.DataFrame:
    """Equal-count bins of the target's train frequency (ordinal ranks; see module docstring)."""
    if n_bins < 1:
        raise R2BenchError(f"need at least one cold-start bin, got {n_bins}")
    if "target_train_freq" not in instances.columns:
        raise R2BenchError("instances have no target_train_freq column: prepare the benchmark with this r2bench")
    n = instances.height
    if n == 0:
        return _frame(instances, [], [])
    ordered = instances.select("instance_id", "target_train_freq").with_row_index("__row").sort(
        ["target_train_freq", "instance_id"]
    )
    bins = (np.arange(n) * n_bins) // n
    ordered = ordered.with_columns(pl.Series("__bin", bins))
    ranges = ordered.group_by("__bin").agg(pl.col("target_train_freq").min().alias("lo"), pl.col("target_train_freq").max().alias("hi"))
    names = {
        int(b): f"Q{int(b) + 1} (freq {lo})" if lo == hi else f"Q{int(b) + 1} (freq {lo}-{hi})"
        for b, lo, hi in ranges.iter_rows()
    }
    ordered = ordered.sort("__row")
    b = ordered["__bin"].to_list()
    return _frame(instances, [names[x] for x in b], b)


def _range_labels(edges: Sequence[int], unit: str, zero: str | None) -> list[tuple[int, int | None, str]]:
    """(lo, hi, label) ranges: [lo, hi] inclusive, hi None = open-ended."""
    out: list[tuple[int, int | None, str]] = []
    lo = 0
    for e in edges:
        e = int(e)
        if e < lo:
            raise R2BenchError(f"group edges must increase, got {list(edges)}")
        if lo == 0 and zero is not None:
            out.append((0, 0, zero))
            lo = 1
            if e == 0:
                continue
        out.append((lo, e, f"{lo}-{e}{unit}" if lo != e else f"{lo}{unit}"))
        lo = e + 1
    out.append((lo, None, f">{lo - 1}{unit}"))
    return out


def fixed_frequency_groups(instances: pl.DataFrame, edges: Sequence[int] = DEFAULT_FIXED_EDGES) -> pl.DataFrame:
    """Fixed frequency groups: with the default edges (0, 5): never seen (0), 1-5, >5."""
    ranges = _range_labels(edges, "", zero="never seen (0)")
    return _assign(instances, instances["target_train_freq"].to_numpy(), ranges)


def history_length_groups(instances: pl.DataFrame, edges: Sequence[int] = DEFAULT_LENGTH_EDGES) -> pl.DataFrame:
    """History-length groups: with the default edges, 1-5, 6-10, 11-15, 16-20 items (and 0 / >20 if present)."""
    lengths = instances["history"].list.len().to_numpy()
    ranges = _range_labels(edges, "", zero="0")
    return _assign(instances, lengths, ranges)


def _assign(instances: pl.DataFrame, values: np.ndarray, ranges) -> pl.DataFrame:
    labels: list[str] = [""] * len(values)
    order = np.full(len(values), -1, dtype=np.int64)
    for j, (lo, hi, name) in enumerate(ranges):
        mask = (values >= lo) & (values <= hi) if hi is not None else values >= lo
        order[mask] = j
        for i in np.flatnonzero(mask):
            labels[i] = name
    if (order < 0).any():
        bad = values[order < 0][0]
        raise R2BenchError(f"value {bad} falls in no group (negative?)")
    return _frame(instances, labels, order.tolist())


def group_sizes(groups: pl.DataFrame) -> pl.DataFrame:
    """group, n, share (fraction of instances), in group order."""
    total = max(groups.height, 1)
    return (
        groups.group_by("group", "group_order").agg(pl.len().alias("n"))
        .sort("group_order")
        .with_columns((pl.col("n") / total).alias("share"))
        .select("group", "n", "share")
    )


STRATIFIERS = {
    "cold-start": cold_start_bins,
    "cold-start-fixed": fixed_frequency_groups,
    "history-length": history_length_groups,
}
