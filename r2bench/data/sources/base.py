"""The interface every dataset source implements.

A source only reads: it returns raw interactions (lazily where the data is big, or
with their ids already encoded by :func:`r2bench.data.interactions.encode_interactions`,
which frees the id strings early), items and optional user profiles in the common
schema, plus provenance (files and checksums). Everything protocol-related happens in
:mod:`r2bench.data.build`.

Common schema:
- interactions: ``user_id`` (str), ``item_id`` (str), ``timestamp`` (int64, ms UTC),
  optional ``rating`` (float) and ``_order`` (int, source order for tie-breaks);
- items: ``item_id`` (str), ``title`` (str), further text columns (str);
- users: ``user_id`` (str) plus profile columns (str), or None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from r2bench.atomic import sha256_file

if TYPE_CHECKING:
    from r2bench.data.interactions import Encoded


@dataclass
class SourceData:
    interactions: pl.DataFrame | pl.LazyFrame | Encoded
    items: pl.DataFrame
    users: pl.DataFrame | None
    info: dict[str, Any] = field(default_factory=dict)  # provenance: files, checksums, parameters
    where: str = "interactions"  # names the interactions input in error messages
    dataset: str | None = None  # overrides the registry name (custom datasets)


class Source:
    """Base class; subclasses set ``spec_defaults`` (BuildSpec fields) and implement ``load``."""

    spec_defaults: dict[str, Any] = {}

    def __init__(self, dataset: str, **options: Any):
        self.dataset = dataset
        self.options = options
        # (start_ms, end_ms) of the spec's window, set by prepare before load(): a
        # hint that lets a big source drop rows early. Using it must never change
        # the built benchmark (the builder applies dedup and window itself).
        self.window: tuple[int | None, int | None] = (None, None)

    def load(self) -> SourceData:  # pragma: no cover - interface
        raise NotImplementedError


def file_record(path: Path) -> dict[str, Any]:
    """Name, size and sha256 of a raw input file, for the manifest."""
    return {"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}
