"""Write a built benchmark to disk: deterministic parquet + manifest, atomically.

Determinism: parquet is written by pyarrow with fixed compression (zstd level 1),
a fixed row-group size, no pandas metadata and a constant ``created_by``, so the
same tables give the same bytes with the same library versions. The manifest holds
no wall-clock time.

The fingerprint is the sha256 of the canonical JSON of {dataset, spec, encoding,
per-table content digest} (``r2bench.data.fingerprint``): it depends on the rows,
not on the parquet bytes, so two benchmarks with the same fingerprint hold the same
rows whatever library wrote them, and a prepared benchmark can be checked at any
time against its manifest (``verify_benchmark``, ``r2bench verify``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from r2bench import paths
from r2bench.atomic import atomic_path, canonical_json, sha256_text, write_text
from r2bench.data.benchmark import FILES, LATEST
from r2bench.data.build import Built, Interactions
from r2bench.data.fingerprint import ENCODING, digest_of_columns, pieces_digest, table_digest
from r2bench.data.instances import InstancePlan
from r2bench.errors import R2BenchError
from r2bench.version import __version__

# /2: content fingerprints (per-table digests of the rows); /1 hashed the parquet bytes.
MANIFEST_SCHEMA = "r2bench.benchmark/2"
ROW_GROUP_SIZE = 65_536
WRITE_ROWS = ROW_GROUP_SIZE  # rows converted to arrow and written at a time


PARQUET_OPTIONS: dict[str, Any] = dict(
    # zstd level 1 without dictionary pages: on a full-size Amazon instances table 1.5x
    # faster to write than level 3 with dictionaries, and 13% smaller (list columns of ids
    # compress better plain); reading is as fast
    compression="zstd",
    compression_level=1,
    use_dictionary=False,
    write_statistics=True,  # (write_batches keeps them to the columns that are not lists)
    store_schema=False,
    write_page_index=False,
    version="2.6",
    data_page_version="1.0",
)


def write_batches(path: Path, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> None:
    """Byte-stable parquet from record batches (the same batches give the same bytes).

    Statistics (min/max per row group) only for the columns that are not lists: no reader
    prunes on the smallest history id, and they cost a tenth of the instances' write."""
    stats = [f.name for f in schema if not pa.types.is_list(f.type) and not pa.types.is_large_list(f.type)]
    with pq.ParquetWriter(path, schema, **{**PARQUET_OPTIONS, "write_statistics": stats}) as writer:
        for batch in batches:
            writer.write_batch(batch, row_group_size=ROW_GROUP_SIZE)


def write_parquet(df: pl.DataFrame, path: Path) -> None:
    """Byte-stable parquet for the same frame, converted to arrow a few row groups at a
    time (a whole Amazon instances table converted at once would double its memory)."""
    schema = df.slice(0, 0).to_arrow().schema.remove_metadata()  # large_string/large_list layouts
    # exported without copying (string views), then converted to ``schema`` a slice at a time
    table = df.to_arrow(compat_level=pl.CompatLevel.newest())
    write_batches(path, schema, (batch.cast(schema) for off in range(0, df.height, WRITE_ROWS)
                                 for batch in table.slice(off, WRITE_ROWS).to_batches()))


def table_name(file: str) -> str:
    """``instances.parquet`` -> ``instances``: tables are named without their file suffix."""
    return file.removesuffix(".parquet")


def fingerprint_of(dataset: str, spec: dict[str, Any], tables: dict[str, str]) -> str:
    """sha256 of {dataset, spec, encoding, table name -> content digest}."""
    return sha256_text(canonical_json({"dataset": dataset, "spec": spec, "encoding": ENCODING, "tables": tables}))


def _manifest(built: Built, tables: dict[str, str], fp: str) -> dict[str, Any]:
    return {
        "schema": MANIFEST_SCHEMA,
        "dataset": built.dataset,
        "fingerprint": fp,
        "r2bench_version": __version__,
        "spec": built.spec.to_dict(),
        "source": built.source,
        "encoding": ENCODING,
        "tables": tables,
        "item_text_fields": built.item_text_fields,
        "profile_fields": built.profile_fields,
        "stats": built.stats,
    }


def coded_digest(table: Interactions | InstancePlan, pool: Executor | None = None) -> str:
    """The content digest of a table held as codes, computed from its slices (ids
    dictionary-encoded); with ``pool``, its columns are hashed there side by side."""
    n = len(table)

    def column(c: str) -> bytes:
        return pieces_digest(c, table.column(c, 0, 0, encoded=True).type, n, table.pieces(c))

    if pool is None:
        return digest_of_columns(n, [column(c) for c in table.columns])
    jobs = [pool.submit(column, c) for c in table.columns]
    return digest_of_columns(n, [job.result() for job in jobs])


def _write_tables(built: Built, folder: Path) -> tuple[dict[str, str], str]:
    folder.mkdir(parents=True, exist_ok=True)
    # Parquet encoding/compression and sha256 both release the GIL: the tables are written
    # here while two threads hash their columns (the largest first)

    with ThreadPoolExecutor(max_workers=2) as pool, ThreadPoolExecutor(max_workers=1) as tables:
        hashing = {
            "instances": tables.submit(coded_digest, built.plan, pool),
            "interactions": tables.submit(coded_digest, built.inter, pool),
            "items": tables.submit(table_digest, built.items),
        }
        write_parquet(built.items, folder / "items.parquet")
        write_batches(folder / "interactions.parquet", built.inter.schema, built.inter.batches())
        write_batches(folder / "instances.parquet", built.plan.schema, built.plan.batches())
        digests = {table_name(name): hashing[table_name(name)].result() for name in FILES}
    fp = fingerprint_of(built.dataset, built.spec.to_dict(), digests)
    (folder / "manifest.json").write_text(canonical_json(_manifest(built, digests, fp)), encoding="utf-8")
    return digests, fp


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
        if final.exists() and _intact(final):  # same fingerprint = same rows: keep the existing copy
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
    """Recompute a benchmark folder's content fingerprint from its files; raise, naming
    the table that differs, when it does not match the manifest. Returns the manifest."""
    import json

    folder = Path(folder)
    mpath = folder / "manifest.json"
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise R2BenchError(f"{folder} is not a prepared benchmark (no manifest.json)") from None
    except json.JSONDecodeError as exc:
        raise R2BenchError(f"{mpath}: corrupt manifest ({exc})") from None
    stated = manifest.get("tables")
    if not isinstance(stated, dict) or manifest.get("encoding") != ENCODING:
        raise R2BenchError(
            f"{folder}: prepared by an r2bench that fingerprinted parquet bytes (manifest {manifest.get('schema')}); "
            f"run `r2bench prepare {manifest.get('dataset', '<dataset>')}` again to give it a content fingerprint")
    bad = []
    for file in FILES:
        name = table_name(file)
        try:
            actual = table_digest(pq.read_table(folder / file))
        except FileNotFoundError:
            bad.append(f"table {name!r}: {folder / file} is missing")
            continue
        except (OSError, pa.ArrowException) as exc:
            bad.append(f"table {name!r}: {folder / file} cannot be read ({exc})")
            continue
        if actual != stated.get(name):
            bad.append(f"table {name!r} differs from the manifest (content digest {actual[:12]}, "
                       f"manifest {str(stated.get(name))[:12]})")
    if bad:
        raise R2BenchError(f"{folder}: " + "; ".join(bad))
    fp = fingerprint_of(manifest["dataset"], manifest["spec"], stated)
    if fp != manifest.get("fingerprint"):
        raise R2BenchError(f"{folder}: the manifest's fingerprint {str(manifest.get('fingerprint'))[:12]} is not "
                           f"the hash of its spec and tables ({fp[:12]}): manifest.json was edited")
    return manifest
