"""Write a built benchmark to disk: deterministic parquet + manifest, atomically.

Determinism: parquet is written by pyarrow with fixed compression (zstd level 3),
a fixed row-group size, no pandas metadata and a constant ``created_by``, so the
same tables give the same bytes. The manifest holds no wall-clock time.

The fingerprint is the sha256 of the canonical JSON of {dataset, spec, per-file
sha256}: two benchmarks with the same fingerprint are byte-identical.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from r2bench import paths
from r2bench.atomic import atomic_path, canonical_json, sha256_file, sha256_text, write_text
from r2bench.data.benchmark import FILES, LATEST
from r2bench.data.build import Built
from r2bench.errors import R2BenchError
from r2bench.version import __version__

MANIFEST_SCHEMA = "r2bench.benchmark/1"
ROW_GROUP_SIZE = 65_536


def write_parquet(df: pl.DataFrame, path: Path) -> None:
    """Byte-stable parquet for the same frame."""
    table = df.to_arrow()
    table = table.replace_schema_metadata(None)
    pq.write_table(
        table,
        path,
        compression="zstd",
        compression_level=3,
        row_group_size=ROW_GROUP_SIZE,
        use_dictionary=True,
        write_statistics=True,
        store_schema=False,
        write_page_index=False,
        version="2.6",
        data_page_version="1.0",
    )


def fingerprint_of(dataset: str, spec: dict[str, Any], files: dict[str, str]) -> str:
    return sha256_text(canonical_json({"dataset": dataset, "spec": spec, "files": files}))


def _manifest(built: Built, files: dict[str, str], fp: str) -> dict[str, Any]:
    return {
        "schema": MANIFEST_SCHEMA,
        "dataset": built.dataset,
        "fingerprint": fp,
        "r2bench_version": __version__,
        "spec": built.spec.to_dict(),
        "source": built.source,
        "files": files,
        "item_text_fields": built.item_text_fields,
        "profile_fields": built.profile_fields,
        "stats": built.stats,
    }


def _write_tables(built: Built, folder: Path) -> tuple[dict[str, str], str]:
    folder.mkdir(parents=True, exist_ok=True)
    tables = {"items.parquet": built.items, "interactions.parquet": built.interactions, "instances.parquet": built.instances}
    files = {}
    for name in FILES:
        write_parquet(tables[name], folder / name)
        files[name] = sha256_file(folder / name)
    fp = fingerprint_of(built.dataset, built.spec.to_dict(), files)
    (folder / "manifest.json").write_text(canonical_json(_manifest(built, files, fp)), encoding="utf-8")
    return files, fp


def write_benchmark(built: Built, dest: str | Path) -> Path:
    """Write the benchmark into exactly ``dest`` (replaced whole, atomically)."""
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        _write_tables(built, tmp)
    return dest


def store_benchmark(built: Built, root: str | Path | None = None) -> Path:
    """Write into ``<root>/<fingerprint>/`` (root defaults to the cache) and point LATEST at it."""
    root = Path(root) if root else paths.benchmark_root(built.dataset)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        _, fp = _write_tables(built, staging / "bench")
        final = root / fp
        if final.exists() and _intact(final):  # same fingerprint = same bytes: keep the existing copy
            shutil.rmtree(staging / "bench")
        else:
            if final.exists():  # damaged (a file deleted or edited): replace it
                os.replace(final, staging / "damaged")
            os.replace(staging / "bench", final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_text(root / LATEST, fp + "\n")
    return final


def _intact(folder: Path) -> bool:
    try:
        verify_benchmark(folder)
    except (R2BenchError, OSError, ValueError, KeyError):
        return False
    return True


def verify_benchmark(folder: str | Path) -> dict[str, Any]:
    """Re-hash the files of a benchmark folder against its manifest; raise on mismatch."""
    import json

    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    for name, digest in manifest["files"].items():
        actual = sha256_file(folder / name)
        if actual != digest:
            raise R2BenchError(f"{folder / name}: sha256 {actual[:12]} does not match the manifest ({digest[:12]})")
    fp = fingerprint_of(manifest["dataset"], manifest["spec"], manifest["files"])
    if fp != manifest["fingerprint"]:
        raise R2BenchError(f"{folder}: fingerprint does not match the manifest")
    return manifest
