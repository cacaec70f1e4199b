"""The construction pipeline, the same for every dataset (paper section 4.1).

Sources hand over three frames in a common schema; :func:`build_benchmark` turns
them into the benchmark tables (see :mod:`r2bench.data.benchmark` for the
contract) and :mod:`r2bench.data.store` writes them. Steps, each a field of
:class:`BuildSpec` recorded in the manifest:

1. repeated (user, item) pairs keep the earliest (timestamp, then source order);
2. the time window ``[window_start_ms, window_end_ms)`` (UTC ms), when set;
3. items without a usable title are dropped (``title_rule``), and their interactions;
4. users with fewer than ``min_interactions`` are dropped; ``limit_users`` keeps a
   seeded subset of the rest (a quick-look benchmark);
5. chronological sequences with a stable tie-break (timestamp, source order);
6. users split train/val/test by ``split_ratios`` with a seeded stable hash;
7. instances: val/test users get one (target = last), train users one per target
   position after the first; history = the preceding <= ``history_len`` items;
8. candidates: target + (K-1) negatives drawn uniformly from the benchmark's items,
   excluding every item the user interacted with, then a seeded shuffle.

Randomness never depends on processing order: every random draw comes from a
counter-based generator (splitmix64) keyed by a stable hash of (seed, purpose,
user_id, target position), computed with BLAKE2b, never Python's ``hash()``.
"""

from __future__ import annotations

import dataclasses
import html
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from r2bench.data.sampling import DRAW_CHUNK, GOLDEN, draw_negatives, splitmix64, stable_hashes, stream
from r2bench.errors import DataError

TITLE_RULES = ("nonempty", "r2ec")
# timestamps below this (ms) would be before 1973-03-03: almost surely seconds
MIN_PLAUSIBLE_MS = 100_000_000_000


@dataclass(frozen=True)
class BuildSpec:
    """Every construction parameter; defaults follow the paper's protocol."""

    seed: int = 0
    history_len: int = 20
    n_candidates: int = 20
    min_interactions: int = 2
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    window_start_ms: int | None = None
    window_end_ms: int | None = None
    title_rule: str = "nonempty"
    max_title_words: int = 20
    limit_users: int | None = None
    dedup: str = "earliest"
    negatives: str = "uniform, excluding all items of the user"

    def __post_init__(self) -> None:
        if self.history_len < 1:
            raise DataError(f"history_len must be >= 1, got {self.history_len}")
        if self.n_candidates < 2:
            raise DataError(f"n_candidates must be >= 2, got {self.n_candidates}")
        if self.min_interactions < 2:
            raise DataError(f"min_interactions must be >= 2 (a history and a target), got {self.min_interactions}")
        r = tuple(float(x) for x in self.split_ratios)
        if len(r) != 3 or min(r) < 0 or abs(sum(r) - 1.0) > 1e-6:
            raise DataError(f"split_ratios must be three non-negative numbers summing to 1, got {self.split_ratios}")
        object.__setattr__(self, "split_ratios", r)
        if self.title_rule not in TITLE_RULES:
            raise DataError(f"title_rule must be one of {TITLE_RULES}, got {self.title_rule!r}")
        if self.limit_users is not None and self.limit_users < 1:
            raise DataError(f"limit_users must be >= 1, got {self.limit_users}")
        if self.dedup != "earliest":
            raise DataError(f"dedup must be 'earliest', got {self.dedup!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["split_ratios"] = list(self.split_ratios)
        return d


@dataclass
class Built:
    """The output of :func:`build_benchmark`, ready for :func:`r2bench.data.store.write_benchmark`."""

    dataset: str
    spec: BuildSpec
    items: pl.DataFrame
    interactions: pl.DataFrame
    instances: pl.DataFrame
    item_text_fields: list[str]
    profile_fields: list[str]
    stats: dict[str, Any]
    source: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- filters


def usable_title_mask(titles: list[str | None], rule: str, max_words: int = 20) -> tuple[list[str | None], list[bool]]:
    """Clean titles and say which are usable.

    ``nonempty``: a title is usable when it is not null and not blank (whitespace
    collapsed). ``r2ec`` (R2ec's preprocess.py): HTML-unescape, then drop a title that
    is missing, contains ``<span id``, has more than ``max_words`` words or is a
    single character.
    """
    cleaned: list[str | None] = []
    keep: list[bool] = []
    for t in titles:
        if t is None:
            cleaned.append(None)
            keep.append(False)
            continue
        if rule == "r2ec":
            raw = t
            t = html.unescape(t)
            c = " ".join(t.split())
            ok = bool(c) and "<span id" not in raw and len(c.split()) <= max_words and len(c) > 1
        else:
            c = " ".join(t.split())
            ok = bool(c)
        cleaned.append(c if ok else None)
        keep.append(ok)
    return cleaned, keep


def check_ms_timestamps(ts: pl.Series | np.ndarray, where: str) -> None:
    """Raise when timestamps look like seconds (or are negative) where ms are expected."""
    arr = ts.to_numpy() if isinstance(ts, pl.Series) else np.asarray(ts)
    if arr.size == 0:
        return
    bad = np.flatnonzero((arr < MIN_PLAUSIBLE_MS))
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{where}: record {i + 1}: timestamp {int(arr[i])} is not in milliseconds "
            f"(values below {MIN_PLAUSIBLE_MS} would be before 1973; seconds? multiply by 1000 "
            f"or set the timestamp unit to 's')"
        )


def _as_lazy(df: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    return df.lazy() if isinstance(df, pl.DataFrame) else df


def clean_items(items: pl.DataFrame, spec: BuildSpec) -> tuple[pl.DataFrame, list[str]]:
    """Items with a usable title, text fields as str; returns (items, text field names)."""
    if "item_id" not in items.columns or "title" not in items.columns:
        raise DataError(f"items need columns item_id and title, got {items.columns}")
    text_fields = [c for c in items.columns if c not in ("item_id", "title")]
    items = items.with_columns(
        pl.col("item_id").cast(pl.String),
        pl.col("title").cast(pl.String),
        *[pl.col(c).cast(pl.String) for c in text_fields],
    ).filter(pl.col("item_id").is_not_null())
    # one row per item: the first occurrence wins (metadata files can repeat an id)
    items = items.unique(subset=["item_id"], keep="first", maintain_order=True)
    cleaned, keep = usable_title_mask(items["title"].to_list(), spec.title_rule, spec.max_title_words)
    items = items.with_columns(pl.Series("title", cleaned, dtype=pl.String)).filter(pl.Series(keep, dtype=pl.Boolean))
    return items.select(["item_id", "title", *text_fields]), text_fields


def filter_interactions(
    interactions: pl.DataFrame | pl.LazyFrame, items: pl.DataFrame, spec: BuildSpec, where: str = "interactions"
) -> pl.DataFrame:
    """Steps 1-5 (dedup, window, title filter, user filter, chronological order), lazily."""
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
    ).filter(pl.col("user_id").is_not_null() & pl.col("item_id").is_not_null() & pl.col("timestamp").is_not_null())
    # 1. repeated (user, item): keep the earliest (timestamp, then source order)
    lf = lf.sort(["user_id", "item_id", "timestamp", "_order"]).unique(
        subset=["user_id", "item_id"], keep="first", maintain_order=True
    )
    # 2. window
    if spec.window_start_ms is not None:
        lf = lf.filter(pl.col("timestamp") >= spec.window_start_ms)
    if spec.window_end_ms is not None:
        lf = lf.filter(pl.col("timestamp") < spec.window_end_ms)
    # 3. items with a usable title
    lf = lf.join(items.lazy().select("item_id"), on="item_id", how="semi")
    # 4. users with enough interactions
    lf = lf.filter(pl.len().over("user_id") >= spec.min_interactions)
    # 5. chronological, stable tie-break on source order
    lf = lf.sort(["user_id", "timestamp", "_order"])
    return lf.collect(engine="streaming")


# ---------------------------------------------------------------- splitting and instances


def split_users(users: list[str], spec: BuildSpec) -> dict[str, list[str]]:
    """Assign users to splits by a seeded stable hash order (independent of input order)."""
    users = sorted(users)
    order = np.argsort(stable_hashes((spec.seed, "split"), users), kind="stable")
    n = len(users)
    n_train = int(round(spec.split_ratios[0] * n))
    n_val = int(round(spec.split_ratios[1] * n))
    n_val = min(n_val, n - n_train)
    ranked = [users[i] for i in order]
    return {"train": ranked[:n_train], "val": ranked[n_train : n_train + n_val], "test": ranked[n_train + n_val :]}


def _list_column(name: str, values: pl.Series, offsets: np.ndarray) -> pl.Series:
    """A list column from its flat values and int64 offsets (no Python objects: arrow views)."""
    flat = values.to_arrow(compat_level=pl.CompatLevel.newest())
    arr = pa.LargeListArray.from_arrays(pa.array(offsets, type=pa.int64()), flat)
    return pl.Series(name, arr).cast(pl.List(values.dtype))


def make_instances(inter: pl.DataFrame, splits: dict[str, list[str]], item_ids: list[str], spec: BuildSpec) -> pl.DataFrame:
    """Instances with histories and shuffled candidates, vectorised over all users.

    Ids never become Python objects: rows and lists are gathered from polars
    series by integer codes (items) and indices (users).
    """
    n_rows = inter.height
    n_items = len(item_ids)
    ids = pl.Series("item_id", item_ids, dtype=pl.String)  # code -> id
    codes = inter["item_id"].replace_strict(item_ids, list(range(n_items)), return_dtype=pl.Int64).to_numpy()
    ts = inter["timestamp"].to_numpy().astype(np.int64)
    # user boundaries (inter is sorted by user)
    user_col = inter["user_id"]
    change = (user_col != user_col.shift(1)).fill_null(True).to_numpy()
    starts = np.flatnonzero(change)
    lengths = np.diff(np.append(starts, n_rows))
    user_series = user_col.gather(starts)
    user_names = user_series.to_list()
    n_users = len(user_names)
    uidx = np.repeat(np.arange(n_users), lengths)
    pos = np.arange(n_rows) - np.repeat(starts, lengths)
    split_of = {u: s for s, us in splits.items() for u in us}
    rank = {"train": 0, "val": 1, "test": 2}
    user_split = np.array([rank[split_of[u]] for u in user_names], dtype=np.int8)
    is_last = pos == np.repeat(lengths - 1, lengths)
    sel = (pos >= 1) & ((user_split[uidx] == 0) | is_last)
    rows = np.flatnonzero(sel)
    # order: split, user_id, target position (rows are already user/position sorted)
    rows = rows[np.argsort(user_split[uidx[rows]], kind="stable")]
    n = len(rows)
    iu = uidx[rows]
    ipos = pos[rows]

    # histories: the preceding <= L items
    h_start = np.maximum(rows - spec.history_len, starts[iu])
    h_len = rows - h_start
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(h_len, out=offsets[1:])
    flat_idx = np.repeat(h_start - offsets[:-1], h_len) + np.arange(offsets[-1])

    # candidates
    n_neg = spec.n_candidates - 1
    user_item_keys = np.sort(uidx.astype(np.int64) * n_items + codes)  # (user, item) pairs are unique after dedup
    user_item_keys = user_item_keys[np.append(True, user_item_keys[1:] != user_item_keys[:-1])]
    per_user_items = np.bincount(user_item_keys // n_items, minlength=n_users)
    short = np.flatnonzero(n_items - per_user_items < n_neg)
    if short.size:
        u = short[0]
        raise DataError(
            f"too few items to draw {n_neg} negatives: user {user_names[u]!r} interacted with "
            f"{per_user_items[u]} of the {n_items} items, leaving {n_items - per_user_items[u]} "
            f"(need >= {n_neg}); lower n_candidates or use more data"
        )
    user_keys = stable_hashes((spec.seed, "instance"), user_names)
    with np.errstate(over="ignore"):
        inst_keys = splitmix64(user_keys[iu] ^ splitmix64(ipos.astype(np.uint64) * GOLDEN))
    cand = np.empty((n, spec.n_candidates), dtype=np.int64)
    cand[:, 0] = codes[rows]
    cand[:, 1:] = draw_negatives(inst_keys, iu, user_item_keys, n_items, n_neg)
    # a seeded shuffle per instance (row-wise, so done in cache-sized chunks)
    counters = np.arange(1 << 20, (1 << 20) + spec.n_candidates, dtype=np.uint64)
    target_index = np.empty(n, dtype=np.int8)
    for lo in range(0, n, DRAW_CHUNK):
        hi = min(n, lo + DRAW_CHUNK)
        perm = np.argsort(stream(inst_keys[lo:hi] ^ np.uint64(0x5DEECE66D), counters), axis=1, kind="stable")
        cand[lo:hi] = np.take_along_axis(cand[lo:hi], perm, axis=1)
        target_index[lo:hi] = np.argmax(perm == 0, axis=1)

    cand_off = np.arange(n + 1, dtype=np.int64) * spec.n_candidates
    targets = codes[rows]
    train_mask = user_split[iu] == 0
    freq = np.bincount(targets[train_mask], minlength=n_items)
    return pl.DataFrame(
        [
            pl.Series("instance_id", np.arange(n, dtype=np.int64)),
            pl.Series("split", ["train", "val", "test"], dtype=pl.String).gather(user_split[iu]),
            user_series.gather(iu).alias("user_id"),
            _list_column("history", ids.gather(codes[flat_idx]), offsets),
            _list_column("history_timestamps", pl.Series(ts[flat_idx], dtype=pl.Int64), offsets),
            ids.gather(targets).alias("target"),
            pl.Series("target_timestamp", ts[rows], dtype=pl.Int64),
            _list_column("candidates", ids.gather(cand.ravel()), cand_off),
            pl.Series("target_index", target_index, dtype=pl.Int8),
            pl.Series("target_train_freq", freq[targets].astype(np.int64), dtype=pl.Int64),
        ]
    )


def limit_user_subset(users: list[str], spec: BuildSpec) -> list[str]:
    """A seeded subset of ``spec.limit_users`` users (stable hash order)."""
    if spec.limit_users is None or spec.limit_users >= len(users):
        return users
    users = sorted(users)
    order = np.argsort(stable_hashes((spec.seed, "limit"), users), kind="stable")
    return sorted(users[i] for i in order[: spec.limit_users])


def compute_stats(inter: pl.DataFrame, items: pl.DataFrame, instances: pl.DataFrame) -> dict[str, Any]:
    users = inter["user_id"].n_unique()
    n_items = items.height
    n_inter = inter.height
    seq = inter.group_by("user_id").len()["len"]
    stats: dict[str, Any] = {
        "users": int(users),
        "items": int(n_items),
        "interactions": int(n_inter),
        "density": round(n_inter / max(users * n_items, 1), 6),
        "avg_sequence_length": round(n_inter / max(users, 1), 4),
        "max_sequence_length": int(seq.max() or 0),
        "instances": int(instances.height),
        "splits": {},
    }
    for s in ("train", "val", "test"):
        part = instances.filter(pl.col("split") == s)
        stats["splits"][s] = {
            "users": int(part["user_id"].n_unique()),
            "instances": int(part.height),
            "cold_targets": int((part["target_train_freq"] == 0).sum()),
        }
    if n_inter:
        stats["first_timestamp_ms"] = int(inter["timestamp"].min())
        stats["last_timestamp_ms"] = int(inter["timestamp"].max())
    return stats


def build_benchmark(
    dataset: str,
    interactions: pl.DataFrame | pl.LazyFrame,
    items: pl.DataFrame,
    spec: BuildSpec,
    users: pl.DataFrame | None = None,
    source: dict[str, Any] | None = None,
    where: str = "interactions",
) -> Built:
    """Run the whole pipeline on source frames.

    ``interactions``: user_id, item_id, timestamp (int, ms UTC), optional rating and
    ``_order`` (source order; added from row order when absent). ``items``: item_id,
    title, further text columns. ``users``: user_id plus profile columns, or None.
    ``where`` names the input in error messages.
    """
    items, text_fields = clean_items(items, spec)
    inter = filter_interactions(interactions, items, spec, where)
    if inter.height == 0:
        win = f" in the window [{spec.window_start_ms}, {spec.window_end_ms}) ms" if spec.window_start_ms or spec.window_end_ms else ""
        raise DataError(
            f"{where}: no interactions left{win} after dedup, title filter and dropping users with "
            f"< {spec.min_interactions} interactions; check the window and the input"
        )
    check_ms_timestamps(inter["timestamp"], where)
    all_users = inter["user_id"].unique().sort().to_list()
    keep_users = limit_user_subset(all_users, spec)
    if len(keep_users) < len(all_users):
        inter = inter.filter(pl.col("user_id").is_in(keep_users))
    inter = inter.drop("_order")
    used = inter["item_id"].unique().sort()
    items = items.filter(pl.col("item_id").is_in(used.implode())).sort("item_id")
    splits = split_users(keep_users, spec)
    instances = make_instances(inter, splits, items["item_id"].to_list(), spec)
    profile_fields: list[str] = []
    if users is not None:
        ucols = [c for c in users.columns if c != "user_id"]
        profile_fields = ucols
        prof = users.select(
            pl.col("user_id").cast(pl.String), *[pl.col(c).cast(pl.String).alias(f"profile_{c}") for c in ucols]
        ).unique(subset=["user_id"], keep="first", maintain_order=True)
        instances = instances.join(prof, on="user_id", how="left", maintain_order="left")
    return Built(
        dataset=dataset,
        spec=spec,
        items=items,
        interactions=inter,
        instances=instances,
        item_text_fields=text_fields,
        profile_fields=profile_fields,
        stats=compute_stats(inter, items, instances),
        source=dict(source or {}),
    )
