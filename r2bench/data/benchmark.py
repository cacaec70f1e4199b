"""The benchmark artifact: the contract between ``prepare`` and everything after it.

A prepared benchmark is a folder ``$R2BENCH_HOME/benchmarks/<dataset>/<fingerprint>/``:

``items.parquet``
    ``item_id`` (str), ``title`` (str), then the dataset's text fields (all str or
    null; their order is ``manifest["item_text_fields"]``), used by prompts.
``interactions.parquet``
    ``user_id`` (str), ``item_id`` (str), ``timestamp`` (int64, ms since epoch, UTC),
    ``rating`` (float64, null when the source has none); deduplicated, windowed,
    sorted by (user_id, timestamp, source order).
``instances.parquet``
    one row per (user, target): ``instance_id`` (int64, unique), ``split``
    ("train" | "val" | "test"), ``user_id``, ``history`` (list[str], oldest first,
    <= L items), ``history_timestamps`` (list[int64], ms), ``target`` (str),
    ``target_timestamp`` (int64, ms), ``candidates`` (list[str] of exactly K, a seeded
    shuffle containing the target once), ``target_index`` (int8, position of the
    target in ``candidates``), ``target_train_freq`` (int64: how often the target is
    a positive in train instances), and ``profile_<field>`` (str) columns where the
    source has user profiles (their names are ``manifest["profile_fields"]``).
``manifest.json``
    the construction spec, r2bench version, source checksums, the content digest
    of each table (``tables``, see ``r2bench.data.fingerprint``), the fingerprint
    and statistics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from r2bench import paths
from r2bench.errors import R2BenchError

K_CANDIDATES = 20
MAX_HISTORY = 20
SPLITS = ("train", "val", "test")
FILES = ("items.parquet", "interactions.parquet", "instances.parquet")
LATEST = "LATEST"


@dataclass
class Benchmark:
    """Read-only view of a prepared benchmark folder. Tables load lazily and are cached."""

    path: Path
    manifest: dict[str, Any] = field(repr=False)

    @property
    def name(self) -> str:
        return self.manifest["dataset"]

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def k(self) -> int:
        return int(self.manifest.get("spec", {}).get("n_candidates", K_CANDIDATES))

    @property
    def item_text_fields(self) -> list[str]:
        return list(self.manifest.get("item_text_fields", []))

    @property
    def profile_fields(self) -> list[str]:
        return list(self.manifest.get("profile_fields", []))

    @cached_property
    def items(self) -> pl.DataFrame:
        return pl.read_parquet(self.path / "items.parquet")

    @cached_property
    def interactions(self) -> pl.DataFrame:
        return pl.read_parquet(self.path / "interactions.parquet")

    @cached_property
    def instances(self) -> pl.DataFrame:
        return pl.read_parquet(self.path / "instances.parquet")

    def split(self, name: str) -> pl.DataFrame:
        """Instances of one split, ordered by instance_id."""
        if name not in SPLITS:
            raise R2BenchError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        return self.instances.filter(pl.col("split") == name).sort("instance_id")

    @cached_property
    def item_titles(self) -> dict[str, str]:
        return dict(zip(self.items["item_id"].to_list(), self.items["title"].to_list()))

    def item_records(self) -> dict[str, dict[str, Any]]:
        """item_id -> {title, <text fields>} for prompt rendering."""
        return {row["item_id"]: row for row in self.items.iter_rows(named=True)}

    def describe(self) -> str:
        stats = self.manifest.get("stats", {})
        return (
            f"{self.name} [{self.fingerprint[:12]}] users={stats.get('users')} "
            f"items={stats.get('items')} interactions={stats.get('interactions')}"
        )


def candidate_matrix(instances: pl.DataFrame) -> np.ndarray:
    """Candidates as an object array [n, K] of item ids."""
    if instances.height == 0:
        return np.empty((0, K_CANDIDATES), dtype=object)
    return np.array(instances["candidates"].to_list(), dtype=object)


def target_indices(instances: pl.DataFrame) -> np.ndarray:
    return instances["target_index"].to_numpy().astype(np.int64)


def _read_manifest(folder: Path) -> dict[str, Any]:
    mpath = folder / "manifest.json"
    try:
        manifest = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise R2BenchError(f"{folder} is not a prepared benchmark (no manifest.json)") from None
    except json.JSONDecodeError as exc:
        raise R2BenchError(f"{mpath}: corrupt manifest ({exc})") from None
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise R2BenchError(f"{folder}: incomplete benchmark, missing {', '.join(missing)}")
    return manifest


def resolve_benchmark_path(name_or_path: str | Path, fingerprint: str | None = None) -> Path:
    """A benchmark folder from a path, or from a dataset name (its latest prepare, or a fingerprint)."""
    p = Path(name_or_path).expanduser()
    if (p / "manifest.json").is_file():
        return p
    name = str(name_or_path)
    root = paths.benchmark_root(name)
    if fingerprint:
        matches = sorted(d for d in root.glob(f"{fingerprint}*") if d.is_dir()) if root.is_dir() else []
        if not matches:
            raise R2BenchError(f"no prepared benchmark {name!r} with fingerprint {fingerprint!r} under {root}")
        return matches[0]
    latest = root / LATEST
    if latest.is_file():
        folder = root / latest.read_text().strip()
        if folder.is_dir():
            return folder
    from r2bench.data.registry import DATASETS

    if name not in DATASETS and not p.exists():
        DATASETS.get(name)  # raises with a did-you-mean
    raise R2BenchError(f"benchmark {name!r} is not prepared yet: run `r2bench prepare {name}`")


def load_benchmark(name_or_path: str | Path, fingerprint: str | None = None) -> Benchmark:
    """Load a prepared benchmark by dataset name (latest prepare) or folder path."""
    folder = resolve_benchmark_path(name_or_path, fingerprint)
    return Benchmark(path=folder, manifest=_read_manifest(folder))
