"""Id tables: the distinct ids of a benchmark as one arrow string array, looked up by integer code.

The builder works on integer codes (a user's or item's position in the sorted
distinct ids) and turns codes back into strings only a slice at a time, while the
tables are written and digested. :func:`take_strings` is that lookup; when every id
has the same length (Amazon ASINs and user ids, for instance) it is a fixed-width
numpy gather, several times faster than arrow's generic ``take``.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa


_ARROW_TYPES = {np.dtype(t): f() for t, f in (
    ("int8", pa.int8), ("int16", pa.int16), ("int32", pa.int32), ("int64", pa.int64),
    ("uint8", pa.uint8), ("uint16", pa.uint16), ("uint32", pa.uint32), ("uint64", pa.uint64),
    ("float32", pa.float32), ("float64", pa.float64))}


def arrow_of(values: np.ndarray) -> pa.Array:
    """A numeric numpy array as an arrow array without nulls, sharing its memory.

    (``pa.array`` would do the same, but its first call imports pandas, a third of a
    second that ``prepare`` does not need.)"""
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(_ARROW_TYPES[values.dtype], len(values), [None, pa.py_buffer(values)])


def large_strings(values: pa.Array | pa.ChunkedArray | pl.Series) -> pa.LargeStringArray:
    """One contiguous ``large_string`` array (polars string views and chunks normalised)."""
    if isinstance(values, pl.Series):
        values = values.to_arrow(compat_level=pl.CompatLevel.newest())
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not pa.types.is_large_string(values.type):
        values = values.cast(pa.large_string())
    return values


def str_offsets(arr: pa.Array) -> np.ndarray:
    """The int64 offsets of a large-string array (its slice only), without a copy."""
    return np.frombuffer(arr.buffers()[1], dtype="<i8")[arr.offset: arr.offset + len(arr) + 1]


def fixed_width(arr: pa.LargeStringArray) -> int | None:
    """The common byte length of every value (None when they differ, when there are nulls or none)."""
    if len(arr) == 0 or arr.null_count:
        return None
    lengths = np.diff(str_offsets(arr))
    width = int(lengths[0])
    return width if width > 0 and bool((lengths == width).all()) else None


def take_strings(dictionary: pa.LargeStringArray, codes: np.ndarray, width: int | None = None) -> pa.LargeStringArray:
    """``dictionary[codes]`` as a ``large_string`` array (codes: a non-negative int numpy array).

    ``width``: the dictionary's :func:`fixed_width`, when known (computed when not given)."""
    codes = np.asarray(codes)
    if width is None:
        width = fixed_width(dictionary)
    if width is None:
        return dictionary.take(arrow_of(codes)).cast(pa.large_string())
    offsets = str_offsets(dictionary)
    data = np.frombuffer(dictionary.buffers()[2], dtype=np.uint8)[offsets[0]: offsets[0] + width * len(dictionary)]
    values = data.view(f"V{width}")[codes].view(np.uint8)  # a fancy-index gather of fixed-size records
    new_offsets = np.arange(0, (len(codes) + 1) * width, width, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(len(codes), pa.py_buffer(new_offsets), pa.py_buffer(values))


class IdTable:
    """Sorted distinct ids (``code -> id``) with fast lookups of code arrays."""

    def __init__(self, ids: pa.Array | pa.ChunkedArray | pl.Series):
        self.ids = large_strings(ids)
        self.width = fixed_width(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, codes: np.ndarray) -> pa.LargeStringArray:
        return take_strings(self.ids, codes, self.width)

    def dictionary(self, codes: np.ndarray) -> pa.DictionaryArray:
        """The same values as :meth:`take`, without copying a string (content digests read it)."""
        # (codes are positions in this table by construction: no bounds check over every code)
        return pa.DictionaryArray.from_arrays(arrow_of(np.asarray(codes, dtype=np.int32)), self.ids, safe=False)

    def series(self, name: str) -> pl.Series:
        return pl.Series(name, self.ids).cast(pl.String)

    def to_list(self) -> list[str]:
        return self.ids.to_pylist()
