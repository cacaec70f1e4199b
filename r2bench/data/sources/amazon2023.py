"""Amazon Reviews 2023 (McAuley Lab): ``{Category}.jsonl.gz`` + ``meta_{Category}.jsonl.gz``.

Reviews are the implicit positives (``user_id``, ``parent_asin``, ``timestamp`` in
ms, ``rating``); metadata gives the item text (joined on ``parent_asin``). Files
come from ``--raw-dir`` (gzip or, as the Hugging Face hub distributes them,
uncompressed ``.jsonl``) or are downloaded (resumably, checksummed) from the
official base URL or a mirror into ``$R2BENCH_HOME/raw/<dataset>/``.

Defaults (recorded in the spec): window [2021-10-01, 2023-10-01) UTC and the R2ec
title rule (HTML-unescape; drop a title that is missing, contains ``<span id``, has
more than 20 words or is one character). R2ec also drops items without a numeric
price; we do not (the price is not used by any prompt), see the data card.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from r2bench import paths
from r2bench.data.spec import MIN_PLAUSIBLE_MS
from r2bench.data.interactions import encode_interactions
from r2bench.data.download import DownloadError, download, record_path
from r2bench.data.jsonl import ReadResult, read_jsonl
from r2bench.data.sources.base import Source, SourceData, file_record
from r2bench.errors import DataError

DEFAULT_BASE_URL = "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_2023/raw"
WINDOW_START_MS = 1_633_046_400_000  # 2021-10-01 00:00 UTC
WINDOW_END_MS = 1_696_118_400_000  # 2023-10-01 00:00 UTC
DESCRIPTION_WORDS = 100
META_BATCH_ROWS = 10_000  # metadata records are long (about 2 KB): small batches keep them few

REVIEW_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String, "parent_asin": pl.String, "timestamp": pl.Int64, "rating": pl.Float64,
}
REVIEW_REQUIRED = ("user_id", "parent_asin", "timestamp")
META_SCHEMA: dict[str, pl.DataType] = {
    "parent_asin": pl.String, "title": pl.String, "average_rating": pl.Float64, "rating_number": pl.Int64,
    "store": pl.String, "main_category": pl.String, "categories": pl.List(pl.String),
    "description": pl.List(pl.String),
}
META_REQUIRED = ("parent_asin",)
TEXT_FIELDS = ("average_rating", "rating_number", "store", "main_category", "categories", "description")


def review_url(base: str, category: str) -> str:
    return f"{base.rstrip('/')}/review_categories/{category}.jsonl.gz"


def meta_url(base: str, category: str) -> str:
    return f"{base.rstrip('/')}/meta_categories/meta_{category}.jsonl.gz"


def _check_ms(path: Path):
    """Block check: every timestamp in ms (a seconds value names its line)."""

    def check(df: pl.DataFrame) -> pl.DataFrame:
        bad = df["timestamp"] < MIN_PLAUSIBLE_MS
        if bad.any():
            i = int(bad.arg_true()[0])
            raise DataError(
                f"{path}:{df['_line'][i]}: timestamp {df['timestamp'][i]} is not in milliseconds "
                f"(Amazon Reviews 2023 uses ms since epoch, e.g. 1588687728923; this looks like seconds)"
            )
        return df

    return check


def item_text(meta: pl.DataFrame, description_words: int) -> pl.DataFrame:
    """Metadata -> items (item_id, title, text fields as strings)."""
    words = pl.col("description").list.join(" ").str.split(" ").list.eval(pl.element().filter(pl.element() != ""))
    return meta.select(
        pl.col("parent_asin").alias("item_id"),
        pl.col("title"),
        pl.col("average_rating").round(2).cast(pl.String),
        pl.col("rating_number").cast(pl.String),
        pl.col("store"),
        pl.col("main_category"),
        pl.when(pl.col("categories").list.len() > 0).then(pl.col("categories").list.join(" > ")).alias("categories"),
        pl.when(pl.col("description").list.len() > 0)
        .then(words.list.head(description_words).list.join(" "))
        .alias("description"),
    )


class Amazon2023(Source):
    spec_defaults = {"window_start_ms": WINDOW_START_MS, "window_end_ms": WINDOW_END_MS, "title_rule": "r2ec"}

    def __init__(self, dataset: str, category: str | None = None, **options: Any):
        super().__init__(dataset, **options)
        if not category:
            raise DataError(f"dataset {dataset!r} has no Amazon category in its registry entry")
        self.category = category

    def _raw_dir_file(self, d: Path, stem: str) -> Path | None:
        """``stem.jsonl.gz`` or ``stem.jsonl`` in ``d`` (None when neither); both is an error."""
        found = [d / f"{stem}{ext}" for ext in (".jsonl.gz", ".jsonl") if (d / f"{stem}{ext}").is_file()]
        if len(found) == 2:
            raise DataError(
                f"--raw-dir {d}: both {found[0].name} and {found[1].name} are there; keep one "
                f"(they must hold the same data, and the manifest records exactly one file)"
            )
        return found[0] if found else None

    def _files(self) -> tuple[Path, Path, dict[str, Any]]:
        raw_dir = self.options.get("raw_dir")
        stems = (self.category, f"meta_{self.category}")
        if raw_dir:
            d = Path(raw_dir)
            if not d.is_dir():
                raise DataError(f"--raw-dir {d}: not a folder")
            found = [self._raw_dir_file(d, stem) for stem in stems]
            if None in found:
                missing = [f"{stem}.jsonl.gz" for stem, f in zip(stems, found) if f is None]
                raise DataError(
                    f"--raw-dir {d}: missing {', '.join(missing)} (expected {stems[0]}.jsonl.gz and "
                    f"{stems[1]}.jsonl.gz; uncompressed {stems[0]}.jsonl / {stems[1]}.jsonl are read too)"
                )
            return found[0], found[1], {"origin": "raw_dir"}
        names = tuple(f"{stem}.jsonl.gz" for stem in stems)
        base = self.options.get("base_url") or os.environ.get("R2BENCH_AMAZON_BASE_URL") or DEFAULT_BASE_URL
        d = paths.raw_dir(self.dataset)
        try:
            downloads = [
                download(review_url(base, self.category), d / names[0]),
                download(meta_url(base, self.category), d / names[1]),
            ]
        except DownloadError as exc:
            raise DataError(f"{exc}\n{self._way_forward(names, base)}") from None
        return d / names[0], d / names[1], {"origin": "download", "base_url": base, "downloads": downloads}

    def _way_forward(self, names: tuple[str, str], base: str) -> str:
        """What a user without access to ``base`` can do instead (every download error ends with it)."""
        return (
            f"Without this host: put {names[0]} and {names[1]} (or the uncompressed .jsonl files, as the "
            f"Hugging Face hub has them) in a folder and run `r2bench prepare {self.dataset} --raw-dir FOLDER`; "
            f"or download from a mirror with --base-url URL (or R2BENCH_AMAZON_BASE_URL) that serves "
            f"review_categories/{names[0]} and meta_categories/{names[1]} (tried: {base})."
        )

    def _read_reviews(self, path: Path, skip: bool) -> tuple[ReadResult, pl.DataFrame]:
        """The reviews inside the window whose (user, item) pair has no earlier review.

        Exactly the rows that can reach the benchmark: dedup keeps a pair's earliest
        review and the window then drops it when that is before the window start, so a
        pair with an earlier review is gone. One read validates every line; each batch
        keeps its in-window rows and only the ids of its earlier reviews (their strings
        share the batch's buffers), and reviews at or after the window end are dropped.
        The builder still applies dedup and window itself. The returned ReadResult
        holds no frame (the rows are in the returned frame only).
        """
        start, end = self.window
        check = _check_ms(path)
        ids = ["user_id", "parent_asin"]
        earlier: list[pl.DataFrame] = []  # the ids of the reviews before the window start

        def split(df: pl.DataFrame) -> pl.DataFrame:
            # (Series filters: a DataFrame filter plans a query, several times slower per batch)
            df = check(df)
            ts = df["timestamp"]
            drop = ts >= end if end is not None else None
            if start is not None:
                before = ts < start
                if before.any():
                    earlier.append(pl.DataFrame([df[c].filter(before) for c in ids]))
                drop = before if drop is None else before | drop
            if drop is None or not drop.any():
                return df  # (a filter copies every row)
            keep = ~drop
            return pl.DataFrame([s.filter(keep) for s in df.get_columns()])

        reviews = read_jsonl(path, REVIEW_SCHEMA, REVIEW_REQUIRED, skip, block_filter=split, desc="reviews",
                             compact=False, on_restart=earlier.clear)
        frame, reviews.frame = reviews.frame, pl.DataFrame()
        if not earlier:
            return reviews, frame
        # pairs with an earlier review: a 64-bit hash of the pair narrows the rows down (cheap
        # integer lookups), an exact join on the ids decides
        before = pl.concat(earlier)
        earlier.clear()
        pair_key = pl.col("user_id").hash(11) ^ pl.col("parent_asin").hash(12)
        key_in = frame.select(pair_key).to_series()
        key_before = before.select(pair_key).to_series()
        maybe = key_in.is_in(key_before.implode())
        if not maybe.any():
            return reviews, frame
        candidates = frame.select(ids).with_row_index("_row").filter(maybe)
        seen_before = before.filter(key_before.is_in(key_in.filter(maybe).implode()))
        del before, key_before
        gone = candidates.join(seen_before, on=ids, how="semi")["_row"].to_numpy()
        if not gone.size:
            return reviews, frame
        keep = np.ones(frame.height, dtype=bool)
        keep[gone] = False
        return reviews, frame.filter(pl.Series(keep))

    def load(self) -> SourceData:
        reviews_path, meta_path, origin = self._files()
        skip = bool(self.options.get("skip_bad_lines"))
        words = int(self.options.get("description_words") or DESCRIPTION_WORDS)
        # the checksums (for the manifest) and the metadata are read while polars reads the
        # reviews (hashlib and polars release the GIL); metadata batches are small and cut to
        # the item text as they arrive (the builder keeps the items that have interactions)
        with ThreadPoolExecutor(max_workers=2) as pool:
            hashing = pool.submit(lambda: [file_record(reviews_path), file_record(meta_path)])
            reading = pool.submit(read_jsonl, meta_path, META_SCHEMA, META_REQUIRED, skip, desc="metadata",
                                  block_filter=lambda df: item_text(df, words), batch_rows=META_BATCH_ROWS)
            reviews, frame = self._read_reviews(reviews_path, skip)
            meta = reading.result()
            files = hashing.result()
        for rec, path in zip(files, (reviews_path, meta_path)):
            rp = record_path(path)
            if origin["origin"] == "download" and rp.is_file():
                want = json.loads(rp.read_text())["sha256"]
                if want != rec["sha256"]:
                    raise DataError(f"{path}: sha256 differs from the download record: corrupt; delete it and prepare again")
        items, meta.frame = meta.frame, pl.DataFrame()
        # ids as codes now: the review strings are freed before the build allocates anything
        inter = encode_interactions(frame.select(
            pl.col("user_id"), pl.col("parent_asin").alias("item_id"), pl.col("timestamp"),
            pl.col("rating"), pl.col("_line").alias("_order"),
        ), where=str(reviews_path))
        del frame
        info = {
            "name": f"Amazon Reviews 2023 ({self.category})",
            "category": self.category,
            "files": files,
            "description_words": words,
            "skip_bad_lines": skip,
            "lines": {"reviews": reviews.records, "meta": meta.records},  # non-blank lines
            "bad_lines_skipped": reviews.bad_lines + meta.bad_lines,
            "bad_line_examples": [f"{reviews_path.name} {b}" for b in reviews.first_bad]
            + [f"{meta_path.name} {b}" for b in meta.first_bad],
            **{k: v for k, v in origin.items() if k != "downloads"},
        }
        if "downloads" in origin:
            info["urls"] = [d["url"] for d in origin["downloads"]]
        return SourceData(interactions=inter, items=items, users=None, info=info, where=str(reviews_path))
