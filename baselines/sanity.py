"""Sanity baselines: the chance line, popularity and item co-occurrence.

All three are vectorised (numpy / scipy.sparse) and learn only from **train**
instances (and the interactions of train users up to their last train target), so
nothing of a val/test user leaks into scoring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from r2bench.methods import BaseMethod

if TYPE_CHECKING:
    from r2bench.data.benchmark import Benchmark

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def item_codes(benchmark: "Benchmark", ids: pl.Series) -> np.ndarray:
    """Stable integer codes for item ids: their row in ``items.parquet`` (-1 if unknown)."""
    lookup = benchmark.items.select(pl.col("item_id"), pl.int_range(pl.len(), dtype=pl.Int64).alias("code"))
    return (
        pl.DataFrame({"item_id": ids.cast(pl.String)})
        .join(lookup, on="item_id", how="left", maintain_order="left")["code"]
        .fill_null(-1)
        .to_numpy()
    )


def candidate_codes(benchmark: "Benchmark", instances: pl.DataFrame) -> np.ndarray:
    """Item codes of the candidates as an int64 array [n, K] (-1 for unknown items)."""
    n = instances.height
    k = int(instances["candidates"].list.len().max()) if n else 0
    return item_codes(benchmark, instances["candidates"].explode()).reshape(n, k)


@dataclass
class RandomConfig:
    """No settings: the seed comes from ``--seed``."""


class RandomMethod(BaseMethod):
    """Uniform random scores in [0, 1), a counter-based hash of (seed, instance_id, item):
    the same instance gets the same scores whatever ``--limit`` or candidate order."""

    name = "random"
    description = "seeded uniform random scores (the chance line)"
    Config = RandomConfig

    def score(self, benchmark: "Benchmark", instances: pl.DataFrame) -> np.ndarray:
        from r2bench.data.build import splitmix64

        codes = candidate_codes(benchmark, instances).astype(np.uint64)
        with np.errstate(over="ignore"):
            seed_key = splitmix64(np.array([self.seed], dtype=np.uint64) * _GOLDEN)
            inst = splitmix64(instances["instance_id"].to_numpy().astype(np.uint64) ^ seed_key)
            bits = splitmix64(inst[:, None] ^ splitmix64(codes + np.uint64(1)))
        return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def train_target_counts(benchmark: "Benchmark") -> np.ndarray:
    """How often each item (by code) is the positive of a train instance."""
    train = benchmark.split("train")
    codes = item_codes(benchmark, train["target"])
    return np.bincount(codes[codes >= 0], minlength=benchmark.items.height).astype(np.float64)


def _lookup(table: np.ndarray, fit_items: pl.Series, benchmark: "Benchmark", instances: pl.DataFrame) -> np.ndarray:
    """Per-candidate values of ``table`` (indexed by the fitted benchmark's item codes)."""
    lookup = pl.DataFrame({"item_id": fit_items, "value": table})
    flat = (
        pl.DataFrame({"item_id": instances["candidates"].explode().cast(pl.String)})
        .join(lookup, on="item_id", how="left", maintain_order="left")["value"]
        .fill_null(0.0)
        .to_numpy()
    )
    return flat.reshape(instances.height, -1)


@dataclass
class PopularityConfig:
    """No settings."""


class PopularityMethod(BaseMethod):
    """Score = number of train instances whose positive is the candidate. Ties are left
    as ties: the evaluator gives them their exact expected value."""

    name = "popularity"
    id_based = True
    description = "how often each item is a positive in train instances"
    Config = PopularityConfig

    def fit(self, benchmark: "Benchmark") -> None:
        self._items = benchmark.items["item_id"]
        self._counts = train_target_counts(benchmark)

    def score(self, benchmark: "Benchmark", instances: pl.DataFrame) -> np.ndarray:
        return _lookup(self._counts, self._items, benchmark, instances)

    def info(self) -> dict:
        return {"items_seen_in_train": int((self._counts > 0).sum())}


@dataclass
class ItemCooccurrenceConfig:
    #: pairs of items at most this many positions apart in a train user's sequence co-occur
    window: int = 5
    #: weight of a pair at distance d is 1 / d**distance_power
    distance_power: float = 1.0
    #: a history item j steps before the most recent one weighs recency_decay**j
    recency_decay: float = 0.9
    #: count only pairs where the history item comes first (next-item direction)
    directed: bool = False
    #: weight of train popularity (scaled to [0, 1]) added to break ties; keep it tiny
    popularity_tiebreak: float = 1e-6


class ItemCooccurrenceMethod(BaseMethod):
    """Score(c) = sum_j recency_decay**(L-1-j) * C[h_j, c] over the history h_0..h_{L-1},
    where C[a, b] sums 1/d**p over the pairs (a, b) at distance d <= window in train
    users' sequences (interactions up to each user's last train target), plus a tiny
    popularity tie-breaker."""

    id_based = True
    name = "item-cooccurrence"
    description = "co-occurrence of a candidate with the history items in train users' sequences"
    Config = ItemCooccurrenceConfig

    def fit(self, benchmark: "Benchmark") -> None:
        import scipy.sparse as sp

        cfg = self.config
        if cfg.window < 1:
            from r2bench.errors import R2BenchError

            raise R2BenchError(f"item-cooccurrence: window must be >= 1, got {cfg.window}")
        n_items = benchmark.items.height
        train = benchmark.split("train")
        cutoff = train.group_by("user_id").agg(pl.col("target_timestamp").max().alias("_cut"))
        seq = (
            benchmark.interactions.join(cutoff, on="user_id", how="inner")
            .filter(pl.col("timestamp") <= pl.col("_cut"))
            .select("user_id", "item_id")  # already sorted by (user, timestamp)
        )
        codes = item_codes(benchmark, seq["item_id"])
        users = seq["user_id"].to_numpy()
        rows, cols, vals = [], [], []
        for d in range(1, cfg.window + 1):
            same = users[d:] == users[:-d]
            a, b = codes[:-d][same], codes[d:][same]
            ok = (a >= 0) & (b >= 0) & (a != b)
            rows.append(a[ok])
            cols.append(b[ok])
            vals.append(np.full(int(ok.sum()), 1.0 / d**cfg.distance_power))
        r, c, v = (np.concatenate(x) if x else np.empty(0) for x in (rows, cols, vals))
        mat = sp.coo_matrix((v, (r, c)), shape=(n_items, n_items)).tocsr()
        if not cfg.directed:
            mat = mat + mat.T
        self._co = mat.tocsr()
        self._co.sum_duplicates()
        self._items = benchmark.items["item_id"]
        self._fit_bench = benchmark
        pop = train_target_counts(benchmark)
        self._pop = pop / pop.max() if pop.max() > 0 else pop
        self._pairs = int(self._co.nnz)

    def score(self, benchmark: "Benchmark", instances: pl.DataFrame) -> np.ndarray:
        import scipy.sparse as sp

        cfg = self.config
        n = instances.height
        # history -> sparse [n, n_items] with recency weights (codes from the fitted benchmark)
        hist = instances.select(
            pl.int_range(pl.len(), dtype=pl.Int64).alias("row"),
            pl.col("history"),
            pl.col("history").list.len().alias("len"),
        ).explode("history").with_columns(
            (pl.int_range(pl.len(), dtype=pl.Int64).over("row")).alias("pos")
        ).drop_nulls("history")
        h_codes = item_codes(self._fit_bench, hist["history"])
        age = (hist["len"] - 1 - hist["pos"]).to_numpy()
        w = cfg.recency_decay ** age.astype(np.float64)
        ok = h_codes >= 0
        n_items = self._co.shape[0]
        hmat = sp.csr_matrix((w[ok], (hist["row"].to_numpy()[ok], h_codes[ok])), shape=(n, n_items))
        cand = item_codes(self._fit_bench, instances["candidates"].explode()).reshape(n, -1)
        safe = np.where(cand >= 0, cand, 0)
        out = np.empty(cand.shape, dtype=np.float64)
        chunk = max(64, int(2e7 // max(n_items, 1)))  # dense [chunk, n_items] stays ~160 MB at most
        for start in range(0, n, chunk):
            block = (hmat[start:start + chunk] @ self._co).toarray()
            rows = np.arange(block.shape[0])[:, None]
            out[start:start + chunk] = block[rows, safe[start:start + chunk]]
        out = np.where(cand >= 0, out + cfg.popularity_tiebreak * self._pop[safe], 0.0)
        return out

    def info(self) -> dict:
        return {"cooccurring_pairs": self._pairs}
