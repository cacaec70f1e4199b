"""Interactions as integer codes: steps 1-5 of the construction (see :mod:`r2bench.data.build`).

Ids become codes first (:func:`encode_interactions`: a user's or item's position among
the sorted distinct ids, so codes order like the ids), and everything after works on
numpy arrays: one sort by (user, timestamp, source order) gives both the dedup (the
first row of a (user, item) pair in that order is its earliest) and the table order,
and the filters are masks over that order (:func:`filter_interactions`). A big source
may encode its frame itself and hand over :class:`Encoded`, which frees the id
strings before the build allocates anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa

from r2bench.data.ids import IdTable, arrow_of
from r2bench.errors import DataError

if TYPE_CHECKING:
    from r2bench.data.spec import BuildSpec


@dataclass
class Interactions:
    """Interactions as integer codes, in table order: (user_id, timestamp, source order).

    ``user`` and ``item`` index the sorted distinct ids ``users`` and ``items``, so codes
    sort like the ids they stand for; strings are looked up only when a table is written
    (:meth:`column`, a slice at a time) or viewed (:meth:`frame`)."""

    users: IdTable
    items: IdTable
    user: np.ndarray  # int32
    item: np.ndarray  # int32
    timestamp: np.ndarray  # int64, ms
    rating: pa.Array  # float64, null where the source has none

    columns = ("user_id", "item_id", "timestamp", "rating")

    def __len__(self) -> int:
        return len(self.user)

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([("user_id", pa.large_string()), ("item_id", pa.large_string()),
                          ("timestamp", pa.int64()), ("rating", pa.float64())])

    def column(self, name: str, lo: int, hi: int, encoded: bool = False) -> pa.Array:
        """Rows ``[lo, hi)`` of one column; ``encoded``: ids as dictionary arrays (for digests)."""
        if name in ("user_id", "item_id"):
            table, codes = (self.users, self.user) if name == "user_id" else (self.items, self.item)
            return table.dictionary(codes[lo:hi]) if encoded else table.take(codes[lo:hi])
        if name == "timestamp":
            return arrow_of(self.timestamp[lo:hi])
        if name == "rating":
            return self.rating.slice(lo, hi - lo)
        raise KeyError(name)

    def pieces(self, name: str, rows: int = 1 << 20):
        return lambda: (self.column(name, lo, min(len(self), lo + rows), encoded=True) for lo in range(0, len(self), rows))

    def batches(self, rows: int = 1 << 18) -> Iterator[pa.RecordBatch]:
        for lo in range(0, len(self), rows):
            hi = min(len(self), lo + rows)
            yield pa.RecordBatch.from_arrays([self.column(c, lo, hi) for c in self.columns], schema=self.schema)

    def frame(self) -> pl.DataFrame:
        return pl.from_arrow(pa.Table.from_batches(list(self.batches()), schema=self.schema))  # type: ignore[return-value]

    def subset(self, rows: np.ndarray, users: np.ndarray, items: np.ndarray) -> "Interactions":
        """The given rows (sorted), with codes renumbered to the kept user and item codes (sorted)."""
        user_map = np.full(len(self.users), -1, dtype=np.int32)
        user_map[users] = np.arange(len(users), dtype=np.int32)
        item_map = np.full(len(self.items), -1, dtype=np.int32)
        item_map[items] = np.arange(len(items), dtype=np.int32)
        return Interactions(
            users=IdTable(self.users.take(users)), items=IdTable(self.items.take(items)),
            user=user_map[self.user[rows]], item=item_map[self.item[rows]], timestamp=self.timestamp[rows],
            rating=self.rating.take(arrow_of(rows)),
        )


@dataclass
class Encoded:
    """Raw interactions (before dedup and filters) with their ids as codes, in source row order.

    ``users``/``items``: the sorted distinct ids; ``user``/``item``: each row's codes;
    ``order``: the source order (ties of a user's timestamps), nulls allowed."""

    users: pl.Series
    items: pl.Series
    user: np.ndarray  # int32
    item: np.ndarray  # int32
    timestamp: np.ndarray  # int64
    rating: pl.Series  # Float64
    order: pl.Series  # Int64

    def __len__(self) -> int:
        return len(self.user)


def _codes(values: pl.Series) -> tuple[pl.Series, np.ndarray]:
    """(sorted distinct values, int32 code of each value): codes sort like the values.

    Values are grouped by a 64-bit hash (an integer sort instead of string hashing and
    lookups, about twice as fast), one value per hash stands for its group, and only
    those are sorted as strings. Every value is then compared with its group's value:
    when two distinct values share a hash (about once in 10^7 builds of this size) the
    exact, slower way is taken instead."""
    if len(values):
        group = values.hash(0x5EED).rank("dense").to_numpy().astype(np.int64) - 1
        some_row = np.empty(int(group.max()) + 1, dtype=np.int64)
        some_row[group] = np.arange(len(group))  # any row of a group will do: they are compared below
        distinct = values.gather(some_row)
        if bool((values == distinct.gather(group)).all()):
            order = distinct.arg_sort().to_numpy()
            rank = np.empty(len(order), dtype=np.int32)
            rank[order] = np.arange(len(order), dtype=np.int32)
            return distinct.gather(order), rank[group]
    distinct = values.unique().sort()
    codes = values.replace_strict(distinct, pl.int_range(0, len(distinct), eager=True, dtype=pl.Int32),
                                  return_dtype=pl.Int32)
    return distinct, codes.to_numpy().astype(np.int32, copy=False)  # (an empty series converts as objects)


def _as_lazy(df: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    return df.lazy() if isinstance(df, pl.DataFrame) else df


def encode_interactions(interactions: pl.DataFrame | pl.LazyFrame, where: str = "interactions") -> Encoded:
    """The common schema (user_id, item_id, timestamp, optional rating and ``_order``) with ids as codes.

    Rows without a user, item or timestamp are dropped; ``_order`` is the row number when absent."""
    lf = _as_lazy(interactions)
    cols = lf.collect_schema().names()
    missing = [c for c in ("user_id", "item_id", "timestamp") if c not in cols]
    if missing:
        raise DataError(f"{where}: missing column(s) {', '.join(missing)} (have {cols})")
    if "_order" not in cols:
        lf = lf.with_row_index("_order")
    rating = pl.col("rating").cast(pl.Float64) if "rating" in cols else pl.lit(None, dtype=pl.Float64).alias("rating")
    lf = lf.select(
        pl.col("user_id").cast(pl.String),
        pl.col("item_id").cast(pl.String),
        pl.col("timestamp").cast(pl.Int64),
        rating,
        pl.col("_order").cast(pl.Int64),
    )
    # a frame in memory is selected in place (no copy); a lazy source streams
    df = lf.collect() if isinstance(interactions, pl.DataFrame) else lf.collect(engine="streaming")
    present = pl.col("user_id").is_not_null() & pl.col("item_id").is_not_null() & pl.col("timestamp").is_not_null()
    if df.select(present.not_().any()).item():
        df = df.filter(present)
    users, user = _codes(df["user_id"])
    items, item = _codes(df["item_id"])
    return Encoded(users=users, items=items, user=user, item=item,
                   timestamp=df["timestamp"].to_numpy().astype(np.int64, copy=False),
                   rating=df["rating"], order=df["_order"])


def chronological_order(user: np.ndarray, n_users: int, ts: np.ndarray, order: pl.Series) -> np.ndarray:
    """The permutation that sorts rows by (user code, timestamp, source order), ties in row
    order; nulls of the source order first, as polars sorts them."""
    n = len(user)
    if n and not order.null_count():
        span = int(ts.max()) - int(ts.min()) + 1
        if n_users * span < 1 << 62:
            # rows in source order, then one stable sort on a packed (user, timestamp) key:
            # 3-5x faster than sorting by three columns
            o = order.to_numpy()
            first = None if bool((o[1:] >= o[:-1]).all()) else np.argsort(o, kind="stable")
            key = user.astype(np.int64) * span + (ts - ts.min())
            key = pl.Series("k", key if first is None else key[first])
            perm = key.to_frame().select(pl.arg_sort_by("k", maintain_order=True)).to_series().to_numpy()
            return perm if first is None else first[perm]
    codes = pl.DataFrame([pl.Series("u", user), pl.Series("t", ts), order.alias("o"), pl.int_range(n, eager=True).alias("i")])
    return codes.select(pl.arg_sort_by(["u", "t", "o", "i"])).to_series().to_numpy()


def filter_interactions(
    interactions: pl.DataFrame | pl.LazyFrame | Encoded, items: pl.DataFrame, spec: "BuildSpec",
    where: str = "interactions",
) -> Interactions:
    """Steps 1-5 (dedup, window, title filter, user filter, chronological order) on codes."""
    enc = interactions if isinstance(interactions, Encoded) else encode_interactions(interactions, where)
    user, item, ts = enc.user, enc.item, enc.timestamp
    # 1 + 5: (user, timestamp, source order)
    order = chronological_order(user, len(enc.users), ts, enc.order)
    user, item, ts = user[order], item[order], ts[order]
    # 1. repeated (user, item): the first in this order is the earliest (timestamp, then source order);
    # a stable sort of the pair keys, which are already sorted by user (timsort runs: 7x faster
    # than hashing them), puts each pair's rows together in that order
    pair = user.astype(np.int64) * len(enc.items) + item
    by_pair = np.argsort(pair, kind="stable")
    pair = pair[by_pair]
    first = np.ones(len(pair), dtype=bool)
    first[1:] = pair[1:] != pair[:-1]
    keep = np.zeros(len(pair), dtype=bool)
    keep[by_pair[first]] = True
    del pair, by_pair, first
    # 2. window
    if spec.window_start_ms is not None:
        keep &= ts >= spec.window_start_ms
    if spec.window_end_ms is not None:
        keep &= ts < spec.window_end_ms
    # 3. items with a usable title
    keep &= enc.items.is_in(items["item_id"].implode()).to_numpy()[item]
    # 4. users with enough interactions
    keep &= (np.bincount(user[keep], minlength=len(enc.users)) >= spec.min_interactions)[user]
    rows = order[keep]
    return Interactions(
        users=IdTable(enc.users), items=IdTable(enc.items), user=user[keep], item=item[keep], timestamp=ts[keep],
        rating=enc.rating.gather(rows).to_arrow(),
    )
