"""Generated benchmarks for tests and demos, built through the real pipeline.

``pattern="random"``: each user picks items uniformly (distinct) at random times.
``pattern="sequential"``: each user walks items i, i+1, i+2, ... (mod n_items) from
a random start, so the next item is predictable from the last one (a planted
signal that sequential methods should find).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from r2bench.data.build import BuildSpec, build_benchmark
from r2bench.data.store import write_benchmark

GENRES = ("Action", "Comedy", "Drama", "Horror", "Sci-Fi", "Romance", "Puzzle", "Sports")
ADJECTIVES = ("Silent", "Crimson", "Hidden", "Last", "Golden", "Broken", "Electric", "Frozen", "Wild", "Distant")
NOUNS = ("Harbor", "Empire", "Garden", "Signal", "Voyage", "Machine", "Forest", "Kingdom", "Echo", "Circuit")
OCCUPATIONS = ("student", "engineer", "artist", "doctor", "writer", "teacher", "other")
BASE_MS = 1_640_995_200_000  # 2022-01-01 UTC


def synthetic_frames(
    n_users: int = 60,
    n_items: int = 80,
    seed: int = 0,
    min_len: int = 3,
    max_len: int = 25,
    pattern: Literal["random", "sequential"] = "random",
    with_profiles: bool = True,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None]:
    """(interactions, items, users) in the source schema the builder takes."""
    if pattern not in ("random", "sequential"):
        raise ValueError(f"pattern must be 'random' or 'sequential', got {pattern!r}")
    if not 2 <= min_len <= max_len:
        raise ValueError(f"need 2 <= min_len <= max_len, got {min_len}, {max_len}")
    rng = np.random.default_rng(seed)
    item_ids = [f"i{j:04d}" for j in range(n_items)]
    items = pl.DataFrame(
        {
            "item_id": item_ids,
            "title": [
                f"The {ADJECTIVES[j % len(ADJECTIVES)]} {NOUNS[(j // len(ADJECTIVES)) % len(NOUNS)]} {j}"
                for j in range(n_items)
            ],
            "genre": [GENRES[int(g)] for g in rng.integers(0, len(GENRES), n_items)],
            "year": [str(int(y)) for y in rng.integers(1980, 2024, n_items)],
        }
    )
    users, its, tss, ratings = [], [], [], []
    for u in range(n_users):
        uid = f"u{u:04d}"
        length = int(rng.integers(min_len, max_len + 1))
        length = min(length, n_items)
        if pattern == "sequential":
            start = int(rng.integers(0, n_items))
            seq = [(start + k) % n_items for k in range(length)]
        else:
            seq = rng.choice(n_items, size=length, replace=False).tolist()
        t0 = BASE_MS + int(rng.integers(0, 200)) * 86_400_000
        gaps = np.cumsum(rng.integers(3_600_000, 5 * 86_400_000, size=length))
        users.extend([uid] * length)
        its.extend(item_ids[j] for j in seq)
        tss.extend(int(t0 + g) for g in gaps)
        ratings.extend(float(r) for r in rng.integers(1, 6, size=length))
    inter = pl.DataFrame(
        {"user_id": users, "item_id": its, "timestamp": tss, "rating": ratings},
        schema={"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64, "rating": pl.Float64},
    )
    profiles = None
    if with_profiles:
        profiles = pl.DataFrame(
            {
                "user_id": [f"u{u:04d}" for u in range(n_users)],
                "age": [str(int(a)) for a in rng.integers(16, 70, n_users)],
                "gender": [("F", "M")[int(g)] for g in rng.integers(0, 2, n_users)],
                "occupation": [OCCUPATIONS[int(o)] for o in rng.integers(0, len(OCCUPATIONS), n_users)],
            }
        )
    return inter, items, profiles


def make_synthetic_benchmark(
    out_dir: str | Path,
    n_users: int = 60,
    n_items: int = 80,
    seed: int = 0,
    min_len: int = 3,
    max_len: int = 25,
    pattern: Literal["random", "sequential"] = "random",
    with_profiles: bool = True,
    dataset: str = "synthetic",
    **spec_overrides,
) -> Path:
    """Generate data and build it with the real pipeline; return the benchmark folder.

    Writes into ``out_dir`` when it is missing, empty or already a benchmark;
    otherwise into ``out_dir/<dataset>-<pattern>-s<seed>``. Never touches
    ``$R2BENCH_HOME`` unless ``out_dir`` is there. ``spec_overrides`` are
    :class:`BuildSpec` fields (e.g. ``history_len=5``); the spec's seed is ``seed``.
    """
    inter, items, users = synthetic_frames(n_users, n_items, seed, min_len, max_len, pattern, with_profiles)
    spec = BuildSpec(**{"seed": seed, **spec_overrides})
    built = build_benchmark(
        dataset,
        inter,
        items,
        spec,
        users=users,
        source={
            "name": "synthetic",
            "params": {
                "n_users": n_users, "n_items": n_items, "seed": seed, "min_len": min_len,
                "max_len": max_len, "pattern": pattern, "with_profiles": with_profiles,
            },
        },
        where=f"synthetic({pattern})",
    )
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        out = out / f"{dataset}-{pattern}-s{seed}"
    return write_benchmark(built, out)
