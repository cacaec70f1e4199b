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

import html
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from r2bench.data.instances import SPLIT_NAMES, InstancePlan, make_instances
from r2bench.data.interactions import Encoded, Interactions, filter_interactions
from r2bench.data.sampling import splitmix64, stable_hashes  # noqa: F401  (splitmix64: baselines.sanity imports it from here)
from r2bench.data.spec import MIN_PLAUSIBLE_MS, TITLE_RULES, BuildSpec  # noqa: F401  (the public names stay here)
from r2bench.errors import DataError

@dataclass
class Built:
    """The output of :func:`build_benchmark`, ready for :func:`r2bench.data.store.write_benchmark`."""

    dataset: str
    spec: BuildSpec
    items: pl.DataFrame
    inter: Interactions  # the interactions table as codes
    plan: InstancePlan  # the instances table as codes
    item_text_fields: list[str]
    profile_fields: list[str]
    stats: dict[str, Any]
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def interactions(self) -> pl.DataFrame:
        """The interactions table (materialised on each call)."""
        return self.inter.frame()

    @property
    def instances(self) -> pl.DataFrame:
        """The instances table (materialised on each call: the store writes it a slice at a time)."""
        return self.plan.to_polars()


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


# ---------------------------------------------------------------- splitting and instances


def split_users(users: list[str], spec: BuildSpec) -> np.ndarray:
    """The split of each user (0 train, 1 val, 2 test) by a seeded stable hash order
    (independent of input order); ``users`` sorted."""
    order = np.argsort(stable_hashes((spec.seed, "split"), users), kind="stable")
    n = len(users)
    n_train = int(round(spec.split_ratios[0] * n))
    n_val = int(round(spec.split_ratios[1] * n))
    n_val = min(n_val, n - n_train)
    split = np.empty(n, dtype=np.int8)
    split[order[:n_train]] = 0
    split[order[n_train: n_train + n_val]] = 1
    split[order[n_train + n_val:]] = 2
    return split


def limit_user_subset(users: list[str], spec: BuildSpec) -> np.ndarray:
    """Indices (ascending) of a seeded subset of ``spec.limit_users`` of the sorted ``users`` (stable hash order)."""
    if spec.limit_users is None or spec.limit_users >= len(users):
        return np.arange(len(users))
    order = np.argsort(stable_hashes((spec.seed, "limit"), users), kind="stable")
    return np.sort(order[: spec.limit_users])


def compute_stats(inter: Interactions, items: pl.DataFrame, plan: InstancePlan) -> dict[str, Any]:
    users = len(inter.users)
    n_items = items.height
    n_inter = len(inter)
    stats: dict[str, Any] = {
        "users": int(users),
        "items": int(n_items),
        "interactions": int(n_inter),
        "density": round(n_inter / max(users * n_items, 1), 6),
        "avg_sequence_length": round(n_inter / max(users, 1), 4),
        "max_sequence_length": int(np.bincount(inter.user).max()) if n_inter else 0,
        "instances": len(plan),
        "splits": {},
    }
    cold = plan.item_train_freq[plan.targets()] == 0
    for code, s in enumerate(SPLIT_NAMES):
        part = plan.split == code
        stats["splits"][s] = {
            "users": int(np.unique(plan.user[part]).size),
            "instances": int(part.sum()),
            "cold_targets": int((cold & part).sum()),
        }
    if n_inter:
        stats["first_timestamp_ms"] = int(inter.timestamp.min())
        stats["last_timestamp_ms"] = int(inter.timestamp.max())
    return stats


def build_benchmark(
    dataset: str,
    interactions: pl.DataFrame | pl.LazyFrame | Encoded,
    items: pl.DataFrame,
    spec: BuildSpec,
    users: pl.DataFrame | None = None,
    source: dict[str, Any] | None = None,
    where: str = "interactions",
) -> Built:
    """Run the whole pipeline on source frames.

    ``interactions``: user_id, item_id, timestamp (int, ms UTC), optional rating and
    ``_order`` (source order; added from row order when absent), or the same already
    encoded (:func:`r2bench.data.interactions.encode_interactions`). ``items``: item_id,
    title, further text columns. ``users``: user_id plus profile columns, or None.
    ``where`` names the input in error messages.
    """
    items, text_fields = clean_items(items, spec)
    inter = filter_interactions(interactions, items, spec, where)
    if len(inter) == 0:
        win = f" in the window [{spec.window_start_ms}, {spec.window_end_ms}) ms" if spec.window_start_ms or spec.window_end_ms else ""
        raise DataError(
            f"{where}: no interactions left{win} after dedup, title filter and dropping users with "
            f"< {spec.min_interactions} interactions; check the window and the input"
        )
    check_ms_timestamps(inter.timestamp, where)
    # every user code has rows (users without enough were dropped): keep a subset, then every
    # item code that is still used, both renumbered in sorted order
    present = np.flatnonzero(np.bincount(inter.user, minlength=len(inter.users)))
    keep_users = present[limit_user_subset(inter.users.take(present).to_pylist(), spec)]
    rows = np.flatnonzero(np.isin(inter.user, keep_users)) if len(keep_users) < len(inter.users) else np.arange(len(inter))
    used = np.flatnonzero(np.bincount(inter.item[rows], minlength=len(inter.items)))
    inter = inter.subset(rows, keep_users, used)
    items = items.filter(pl.col("item_id").is_in(inter.items.series("item_id").implode())).sort("item_id")
    user_split = split_users(inter.users.to_list(), spec)
    profile_fields: list[str] = []
    profiles = None
    if users is not None:
        ucols = [c for c in users.columns if c != "user_id"]
        profile_fields = ucols
        prof = users.select(
            pl.col("user_id").cast(pl.String), *[pl.col(c).cast(pl.String).alias(f"profile_{c}") for c in ucols]
        ).unique(subset=["user_id"], keep="first", maintain_order=True)
        # one row per user code (a left join: users without a profile get nulls)
        per_user = inter.users.series("user_id").to_frame().join(prof, on="user_id", how="left", maintain_order="left")
        profiles = per_user.drop("user_id").to_arrow().cast(
            pa.schema([pa.field(f"profile_{c}", pa.large_string()) for c in ucols]))
    plan = make_instances(inter, user_split, spec, profiles)
    return Built(
        dataset=dataset,
        spec=spec,
        items=items,
        inter=inter,
        plan=plan,
        item_text_fields=text_fields,
        profile_fields=profile_fields,
        stats=compute_stats(inter, items, plan),
        source=dict(source or {}),
    )
