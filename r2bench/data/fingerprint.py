"""Content fingerprints: a digest of a table's rows, not of the file that holds them.

A benchmark's fingerprint must not change when a polars or pyarrow release writes
different parquet bytes for the same rows (compression, row groups, statistics,
page layout, embedded metadata). So each table is hashed through a canonical
encoding of its columns, defined here and nowhere else (format ``r2bench.table/1``):

``table digest`` = sha256 of
    ``b"r2bench.table/1\\0"``, ``u64(rows)``, ``u64(columns)``, then for each column
    *in table order* its ``column digest`` (32 raw bytes).

``column digest`` = sha256 of
    ``str(name)``, ``str(type)``, ``u64(n)``, then the column's *values block*.

``values block`` of n values of a type:
    validity: n bytes, 1 = value present, 0 = null;
    then the values, nulls replaced by the type's zero value (0, 0.0, false, "", []):

    ========================  =========================================================
    type (the ``str(type)``)  values
    ========================  =========================================================
    ``int8`` ... ``int64``,   little-endian two's complement of that width
    ``uint8`` ... ``uint64``
    ``float32``, ``float64``  little-endian IEEE 754; every NaN as the quiet NaN
                              ``0x7fc00000`` / ``0x7ff8000000000000``
    ``bool``                  one byte per value, 0 or 1
    ``str``                   ``u64`` byte length of each value, then all UTF-8 bytes
                              concatenated
    ``list<T>``               ``u64`` length of each list, then the values block of
                              the concatenated elements as a column of type ``T``
    ``datetime[unit,tz]``,    the int64 count of units since the epoch (tz ``none``
    ``duration[unit]``        when naive), as ``int64``
    ``date``                  the int32 day count, as ``int32``
    ========================  =========================================================

``str(s)`` is ``u64(len(utf8(s)))`` followed by ``utf8(s)``; ``u64`` is unsigned
64-bit little-endian. Large/view string and list layouts, dictionary encoding and
chunking are normalised away before encoding, so what counts is: column names,
their order, their types as named above, and the values in row order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from r2bench.data.ids import str_offsets, take_strings
from r2bench.errors import R2BenchError

ENCODING = "r2bench.table/1"

_FLOAT_NAN = {"float32": np.array([np.nan], dtype="<f4"), "float64": np.array([np.nan], dtype="<f8")}


def _u64(value: int) -> bytes:
    return int(value).to_bytes(8, "little", signed=False)


def _lp(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _u64(len(raw)) + raw


def type_name(t: pa.DataType) -> str:
    """The canonical name of an arrow type in the encoding (raises for types it does not define)."""
    if pa.types.is_integer(t):
        return str(t)  # int8 ... uint64
    if pa.types.is_float32(t) or pa.types.is_float64(t):
        return f"float{t.bit_width}"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "str"
    if pa.types.is_dictionary(t):
        return type_name(t.value_type)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t) or pa.types.is_large_list_view(t) \
            or pa.types.is_fixed_size_list(t):
        return f"list<{type_name(t.value_type)}>"
    if pa.types.is_timestamp(t):
        return f"datetime[{t.unit},{t.tz or 'none'}]"
    if pa.types.is_duration(t):
        return f"duration[{t.unit}]"
    if pa.types.is_date32(t):
        return "date"
    raise R2BenchError(f"the content fingerprint does not define an encoding for arrow type {t}")


def _normalise(arr: pa.Array) -> pa.Array:
    """One contiguous array in the plain layout of its canonical type."""
    t = arr.type
    if pa.types.is_dictionary(t):
        dictionary = _normalise(arr.dictionary)
        if pa.types.is_large_string(dictionary.type) and dictionary.null_count == 0:
            # strings stay encoded: their lengths come from the dictionary, and only the pass
            # over the bytes decodes them (``_str_bytes``)
            return pa.DictionaryArray.from_arrays(arr.indices, dictionary)
        # decoded through plain values (no take kernel for string views)
        arr = pa.DictionaryArray.from_arrays(arr.indices, dictionary).dictionary_decode()
        t = arr.type
    if pa.types.is_string(t) or pa.types.is_string_view(t):
        return arr.cast(pa.large_string())
    if pa.types.is_list(t) or pa.types.is_list_view(t) or pa.types.is_large_list_view(t) or pa.types.is_fixed_size_list(t):
        return arr.cast(pa.large_list(t.value_type))
    return arr


#: rows converted and hashed at a time: the encoding is defined on whole columns, but it is
#: computed in passes over slices of this many rows, so memory stays bounded on big tables
SLICE_ROWS = 1 << 16

Pieces = Callable[[], Iterator[pa.Array]]


def _is_str_dictionary(t: pa.DataType) -> bool:
    return pa.types.is_dictionary(t) and pa.types.is_large_string(t.value_type)


def _plain_strings(arr: pa.Array) -> pa.Array:
    """A large_string piece with nulls as "" (a dictionary-encoded piece decoded)."""
    if pa.types.is_dictionary(arr.type):
        if arr.null_count:
            arr = arr.dictionary_decode()
        else:
            return take_strings(arr.dictionary, arr.indices.to_numpy(zero_copy_only=False))
    return pc.fill_null(arr, "") if arr.null_count else arr


def _str_lengths(arr: pa.Array) -> np.ndarray:
    """The u64 byte length of each value of a string piece (0 for a null)."""
    if pa.types.is_dictionary(arr.type) and not arr.null_count:
        return np.diff(str_offsets(arr.dictionary)).astype("<u8")[arr.indices.to_numpy(zero_copy_only=False)]
    return np.diff(str_offsets(_plain_strings(arr))).astype("<u8", copy=False)


def _update_values(h: "hashlib._Hash", pieces: Pieces, t: pa.DataType) -> None:
    """Feed the values block of a column, given as consecutive pieces, into ``h``.

    The block is validity (all values), then lengths (all values), then bytes or child
    values: each part is one pass over the pieces, each piece a slice of the column."""
    for arr in pieces():  # validity
        n = len(arr)
        h.update(arr.is_valid().to_numpy(zero_copy_only=False).astype(np.uint8) if arr.null_count
                 else b"\1" * n)
    if pa.types.is_large_string(t) or _is_str_dictionary(t):
        for arr in pieces():  # lengths
            h.update(_str_lengths(arr))
        for arr in pieces():  # bytes
            arr = _plain_strings(arr)
            offsets = str_offsets(arr)
            if len(arr):
                h.update(memoryview(arr.buffers()[2])[int(offsets[0]): int(offsets[-1])])
        return
    if pa.types.is_large_list(t):
        for arr in pieces():  # lengths
            lengths = pc.list_value_length(arr)
            lengths = lengths.fill_null(0) if lengths.null_count else lengths  # (fill_null imports pandas)
            h.update(lengths.to_numpy(zero_copy_only=False).astype("<u8"))
        # the child values: flatten honours each piece's offset and skips null lists
        _update_values(h, lambda: (_normalise(a.flatten()) for a in pieces()), _normalise(
            pa.nulls(0, type=t).flatten()).type)
        return
    name = type_name(t)
    for arr in pieces():  # values
        if pa.types.is_timestamp(t) or pa.types.is_duration(t):
            arr = arr.cast(pa.int64())
        elif pa.types.is_date32(t):
            arr = arr.cast(pa.int32())
        elif not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
            raise R2BenchError(f"the content fingerprint does not define an encoding for arrow type {t}")
        if pa.types.is_boolean(arr.type):
            values = (arr.fill_null(False) if arr.null_count else arr).to_numpy(zero_copy_only=False).astype(np.uint8)
        else:
            values = (arr.fill_null(0) if arr.null_count else arr).to_numpy(zero_copy_only=False)
            values = values.astype(values.dtype.newbyteorder("<"), copy=False)
            if name in _FLOAT_NAN:
                nan = np.isnan(values)
                if nan.any():
                    values = values.copy()
                    values[nan] = _FLOAT_NAN[name][0]
        h.update(np.ascontiguousarray(values))


def _column_pieces(column: Any) -> tuple[pa.DataType, Pieces]:
    """The normalised arrow type of a column (polars Series, arrow Array or ChunkedArray) and
    a function yielding it as normalised arrow slices of ``SLICE_ROWS`` rows."""
    n = len(column)
    if not isinstance(column, (pa.Array, pa.ChunkedArray)):
        # polars: exported without copying (string views; the default export copies every
        # string, and a polars slice of a list column exports the whole column), then sliced
        import polars as pl

        column = column.to_arrow(compat_level=pl.CompatLevel.newest())
    take = column.slice

    def pieces() -> Iterator[pa.Array]:
        for off in range(0, n, SLICE_ROWS):
            piece = take(off, SLICE_ROWS)
            yield _normalise(piece.combine_chunks() if isinstance(piece, pa.ChunkedArray) else piece)

    first = take(0, 0)
    first = first.combine_chunks() if isinstance(first, pa.ChunkedArray) else first
    return _normalise(first).type, pieces


def column_digest(name: str, column: Any) -> bytes:
    t, pieces = _column_pieces(column)
    return pieces_digest(name, t, len(column), pieces)


def pieces_digest(name: str, t: pa.DataType, n: int, pieces: Pieces) -> bytes:
    """The column digest of a column of ``n`` values of arrow type ``t`` given as consecutive
    pieces (``pieces()`` yields them anew for each pass; string pieces may be
    dictionary-encoded, which hashes as the decoded values)."""
    h = hashlib.sha256()
    h.update(_lp(name) + _lp(type_name(t)) + _u64(n))
    _update_values(h, pieces, t)
    return h.digest()


def digest_of_columns(n_rows: int, column_digests: list[bytes]) -> str:
    """The table digest from its row count and its column digests in table order."""
    h = hashlib.sha256()
    h.update(ENCODING.encode() + b"\0" + _u64(n_rows) + _u64(len(column_digests)))
    for d in column_digests:
        h.update(d)
    return h.hexdigest()


def table_digest(table: Any) -> str:
    """Hex content digest of a polars DataFrame or an arrow Table (see the module docstring)."""
    if isinstance(table, pa.Table):
        names, columns = table.column_names, table.columns
    else:
        names, columns = table.columns, table.get_columns()
    return digest_of_columns(len(table), [column_digest(name, column) for name, column in zip(names, columns)])
