"""Instances as integer codes: built for all users at once, turned into strings a slice at a time.

:func:`make_instances` computes every instance (histories as row ranges of the
interactions, candidates as item codes, target positions, train frequencies) in
numpy; the result, :class:`InstancePlan`, holds no string. The instances table
exists only slice by slice: :meth:`InstancePlan.batch` materialises rows
``[lo, hi)`` as an arrow record batch for the parquet writer, and
:meth:`InstancePlan.pieces` gives a column's slices (strings dictionary-encoded)
to the content digest. On a full-size Amazon category the plan takes about a
tenth of the memory of the materialised table.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa

from r2bench.data.ids import IdTable, arrow_of
from r2bench.data.sampling import DRAW_CHUNK, GOLDEN, draw_chunk, splitmix64, stable_hashes, stream
from r2bench.errors import DataError
from r2bench.progress import bar

if TYPE_CHECKING:
    from r2bench.data.interactions import Interactions
    from r2bench.data.spec import BuildSpec

SPLIT_NAMES = ("train", "val", "test")
_SPLITS = IdTable(pl.Series(SPLIT_NAMES))
#: rows of the instances table materialised at a time: one parquet row group (about 35 MB
#: of strings on Amazon; larger batches only add memory, the writer is no faster)
BATCH_ROWS = 1 << 16

SCALARS = {
    "instance_id": pa.int64(), "split": pa.large_string(), "user_id": pa.large_string(),
    "history": pa.large_list(pa.large_string()), "history_timestamps": pa.large_list(pa.int64()),
    "target": pa.large_string(), "target_timestamp": pa.int64(), "candidates": pa.large_list(pa.large_string()),
    "target_index": pa.int8(), "target_train_freq": pa.int64(),
}


@dataclass
class InstancePlan:
    """Every instance as codes, in table order (split, user_id, target position).

    ``row``: the target's row in ``inter``; the history is rows ``[h_start, row)``.
    ``profiles``: one row per user code (``profile_<field>`` strings), or None."""

    inter: "Interactions"
    split: np.ndarray  # int8: 0 train, 1 val, 2 test
    user: np.ndarray  # int32 user code
    row: np.ndarray  # int64
    h_start: np.ndarray  # int64
    candidates: np.ndarray  # int32 [n, K] item codes, shuffled
    target_index: np.ndarray  # int8
    item_train_freq: np.ndarray  # int64 per item code: train instances with it as target
    profiles: pa.Table | None = None

    def __len__(self) -> int:
        return len(self.row)

    @property
    def columns(self) -> list[str]:
        return [*SCALARS, *(self.profiles.column_names if self.profiles is not None else [])]

    @property
    def schema(self) -> pa.Schema:
        extra = [pa.field(c, pa.large_string()) for c in (self.profiles.column_names if self.profiles is not None else [])]
        return pa.schema([pa.field(n, t) for n, t in SCALARS.items()] + extra)

    def targets(self) -> np.ndarray:
        return self.inter.item[self.row]

    @cached_property
    def _histories(self) -> tuple[np.ndarray, np.ndarray]:
        """Offsets and interaction rows (int32) of every history, computed once: the writer and
        each pass of the digest read them a slice at a time."""
        lengths = self.row - self.h_start
        offsets = np.zeros(len(self) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        rows = np.repeat(self.h_start - offsets[:-1], lengths) + np.arange(offsets[-1])
        return offsets, rows.astype(np.int32 if len(self.inter) < 1 << 31 else np.int64)

    def _history_rows(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Offsets (from 0) and the interaction rows of the histories of instances ``[lo, hi)``."""
        offsets, rows = self._histories
        return offsets[lo: hi + 1] - offsets[lo], rows[offsets[lo]: offsets[hi]]

    def column(self, name: str, lo: int, hi: int, encoded: bool = False) -> pa.Array:
        """Rows ``[lo, hi)`` of one column; ``encoded``: strings as dictionary arrays (for digests)."""
        inter = self.inter
        ids = (lambda table, codes: table.dictionary(codes)) if encoded else (lambda table, codes: table.take(codes))
        if name == "instance_id":
            return arrow_of(np.arange(lo, hi, dtype=np.int64))
        if name == "split":
            return ids(_SPLITS, self.split[lo:hi])
        if name == "user_id":
            return ids(inter.users, self.user[lo:hi])
        if name in ("history", "history_timestamps"):
            offsets, rows = self._history_rows(lo, hi)
            values = ids(inter.items, inter.item[rows]) if name == "history" else arrow_of(inter.timestamp[rows])
            return pa.LargeListArray.from_arrays(arrow_of(offsets), values)
        if name == "target":
            return ids(inter.items, inter.item[self.row[lo:hi]])
        if name == "target_timestamp":
            return arrow_of(inter.timestamp[self.row[lo:hi]])
        if name == "candidates":
            k = self.candidates.shape[1]
            offsets = np.arange(0, (hi - lo + 1) * k, k, dtype=np.int64)
            return pa.LargeListArray.from_arrays(arrow_of(offsets), ids(inter.items, self.candidates[lo:hi].ravel()))
        if name == "target_index":
            return arrow_of(self.target_index[lo:hi])
        if name == "target_train_freq":
            return arrow_of(self.item_train_freq[inter.item[self.row[lo:hi]]])
        if self.profiles is not None and name in self.profiles.column_names:
            return self.profiles[name].take(arrow_of(self.user[lo:hi])).combine_chunks()
        raise KeyError(name)

    def batch(self, lo: int, hi: int) -> pa.RecordBatch:
        """Rows ``[lo, hi)`` as an arrow record batch with :attr:`schema`."""
        return pa.RecordBatch.from_arrays([self.column(c, lo, hi) for c in self.columns], schema=self.schema)

    def batches(self, rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        for lo in range(0, len(self), rows):
            yield self.batch(lo, min(len(self), lo + rows))

    def pieces(self, name: str, rows: int = BATCH_ROWS):
        """A function yielding the column's slices anew on each call (the digest's passes)."""
        return lambda: (self.column(name, lo, min(len(self), lo + rows), encoded=True) for lo in range(0, len(self), rows))

    def to_polars(self) -> pl.DataFrame:
        """The whole table as a polars DataFrame (small benchmarks and tests; the store never does this)."""
        table = pa.Table.from_batches(list(self.batches()), schema=self.schema)
        return pl.from_arrow(table)  # type: ignore[return-value]


def shuffle_order(keys: np.ndarray, k: int) -> np.ndarray:
    """``[n, k]``: row i is the stable argsort of ``stream(keys[i] ^ 0x5DEECE66D, 2^20 + j)``.

    Computed as a plain sort of the random values with their position in the low bits
    (several times faster than an argsort); a row where two values agree above those bits
    (about one row in 10^14) is recomputed by the argsort itself."""
    counters = np.arange(1 << 20, (1 << 20) + k, dtype=np.uint64)
    keys = keys ^ np.uint64(0x5DEECE66D)
    bits = max(1, (k - 1).bit_length())
    low = np.uint64((1 << bits) - 1)
    r = stream(keys, counters)
    r &= ~low
    r |= np.arange(k, dtype=np.uint64)
    r.sort(axis=1)
    perm = (r & low).astype(np.intp)
    # sorted values that differ only in the low bits: their order came from the positions
    tied = np.flatnonzero(((r[:, 1:] - r[:, :-1]) <= low).any(axis=1))
    if tied.size:
        perm[tied] = np.argsort(stream(keys[tied], counters), axis=1, kind="stable")
    return perm


def user_starts(user: np.ndarray, n_users: int) -> np.ndarray:
    """First row of each user code in rows sorted by user (every code has rows)."""
    return np.searchsorted(user, np.arange(n_users, dtype=user.dtype))


def make_instances(inter: "Interactions", user_split: np.ndarray, spec: "BuildSpec",
                   profiles: pa.Table | None = None) -> InstancePlan:
    """Instances with histories and shuffled candidates, vectorised over all users.

    ``user_split``: the split (0 train, 1 val, 2 test) of each user code. Val/test users
    get one instance (target = last item), train users one per position after the
    first. Candidates: the target and ``n_candidates - 1`` negatives drawn uniformly
    from the benchmark's items outside the user's, then a seeded shuffle."""
    n_rows = len(inter)
    n_items = len(inter.items)
    n_users = len(inter.users)
    codes = inter.item
    uidx = inter.user
    starts = user_starts(uidx, n_users)
    lengths = np.diff(np.append(starts, n_rows))
    pos = np.arange(n_rows) - np.repeat(starts, lengths)
    is_last = pos == np.repeat(lengths - 1, lengths)
    sel = (pos >= 1) & ((user_split[uidx] == 0) | is_last)
    rows = np.flatnonzero(sel)
    # order: split, user_id, target position (rows are already user/position sorted)
    rows = rows[np.argsort(user_split[uidx[rows]], kind="stable")]
    n = len(rows)
    iu = uidx[rows]
    ipos = pos[rows]
    h_start = np.maximum(rows - spec.history_len, starts[iu])

    n_neg = spec.n_candidates - 1
    # (user, item) pairs are unique after dedup and already sorted by user: a stable sort (timsort
    # runs) is 4x faster than the default
    user_item_keys = np.sort(uidx.astype(np.int64) * n_items + codes, kind="stable")
    per_user_items = lengths  # one row per (user, item)
    short = np.flatnonzero(n_items - per_user_items < n_neg)
    if short.size:
        u = short[0]
        raise DataError(
            f"too few items to draw {n_neg} negatives: user {inter.users.ids[int(u)].as_py()!r} interacted with "
            f"{per_user_items[u]} of the {n_items} items, leaving {n_items - per_user_items[u]} "
            f"(need >= {n_neg}); lower n_candidates or use more data"
        )
    user_keys = stable_hashes((spec.seed, "instance"), inter.users.to_list())
    with np.errstate(over="ignore"):
        inst_keys = splitmix64(user_keys[iu] ^ splitmix64(ipos.astype(np.uint64) * GOLDEN))
    cand = np.empty((n, spec.n_candidates), dtype=np.int32)
    cand[:, 0] = codes[rows]
    target_index = np.empty(n, dtype=np.int8)

    def candidates(lo: int) -> int:
        """Negatives, then a seeded shuffle, for instances [lo, lo + DRAW_CHUNK) (cache-sized)."""
        hi = min(n, lo + DRAW_CHUNK)
        cand[lo:hi, 1:] = draw_chunk(inst_keys[lo:hi], iu[lo:hi], user_item_keys, n_items, n_neg)
        perm = shuffle_order(inst_keys[lo:hi], spec.n_candidates)
        cand[lo:hi] = np.take_along_axis(cand[lo:hi], perm, axis=1)
        target_index[lo:hi] = np.argmax(perm == 0, axis=1)
        return hi - lo

    # chunks are independent (every draw is keyed by its instance): two threads share them
    # (numpy releases the GIL in its loops)
    with ThreadPoolExecutor(max_workers=2) as pool, bar(total=n, desc="candidates", unit="inst") as b:
        for done in pool.map(candidates, range(0, n, DRAW_CHUNK)):
            b.update(done)
    train_targets = codes[rows[user_split[iu] == 0]]
    freq = np.bincount(train_targets, minlength=n_items).astype(np.int64)
    return InstancePlan(inter=inter, split=user_split[iu].astype(np.int8), user=iu.astype(np.int32), row=rows.astype(np.int64),
                        h_start=h_start.astype(np.int64), candidates=cand, target_index=target_index,
                        item_train_freq=freq, profiles=profiles)
