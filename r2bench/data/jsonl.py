"""Streaming, validating readers for large ``.jsonl`` / ``.jsonl.gz`` files (Amazon Reviews 2023).

:func:`read_jsonl` is the entry point. Its fast path is polars' native NDJSON scan
(``scan_ndjson`` with an explicit schema, so only the needed fields are
materialised; streaming, gzip decompressed by polars in chunks, batches reduced by
a filter as they arrive): memory stays at the size of the kept columns. Anything
the scan cannot vouch for (a parse or type error, a required field null, a
truncated gzip, a filter that raises) sends the whole file to the line-naming block
reader, :func:`read_jsonl_blocks`, which is the only source of error messages.

The block reader decompresses in blocks of complete lines and parses each block by
polars (``read_ndjson``, the same parser and schema as the scan); when polars
rejects a block, a second pass over that block with ``json.loads`` finds the first
offending line so the error names ``file:line``. Malformed lines (not JSON, not an
object, a required field missing or null, a wrong type) fail by default; with
``skip_bad_lines`` they are dropped and counted. A truncated or corrupt gzip
stream always fails: the file is incomplete.

A name ending in ``.gz`` must hold gzip data and any other name must not (polars
would silently accept either).
"""

from __future__ import annotations

import io
import json
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from r2bench.errors import DataError
from r2bench.progress import bar

log = logging.getLogger(__name__)

BLOCK_BYTES = 32 << 20


def _polars_scans_in_a_stream() -> bool:
    """polars >= 1.38 decompresses gzip while scanning (pola-rs/polars#26200); older releases
    decompress the whole file into memory first, so they get the block reader instead."""
    try:
        major, minor = (int(x) for x in pl.__version__.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (1, 38) and hasattr(pl.LazyFrame, "collect_batches")


NATIVE_SCAN = _polars_scans_in_a_stream()
SCAN_BATCH_ROWS = 100_000  # rows per batch handed to Python (polars' default is about a thousand)
GZIP_MAGIC = b"\x1f\x8b"

# expected JSON kinds for the second-pass check
_KIND = {
    pl.String: (str,),
    pl.Int64: (int,),
    pl.Float64: (int, float),
    pl.Boolean: (bool,),
}


@dataclass
class ReadResult:
    frame: pl.DataFrame
    lines: int  # lines seen, blank ones included (the fast scan sees no blank lines: see records)
    bad_lines: int  # lines skipped (skip_bad_lines)
    first_bad: list[str]  # up to 5 "line N: reason" for the manifest
    blank_lines: int = 0  # whitespace-only lines (no record)
    fast: bool = False  # read by the native scan (True) or the block reader

    @property
    def records(self) -> int:
        """Non-blank lines, good or bad: the same figure from either reader."""
        return self.lines - self.blank_lines


def _kind_ok(value, dtype) -> bool:
    if value is None:
        return True
    if isinstance(dtype, pl.List):
        return isinstance(value, list) and all(_kind_ok(v, dtype.inner) for v in value)
    kinds = _KIND.get(dtype.base_type() if hasattr(dtype, "base_type") else dtype)
    if kinds is None:
        return True
    if isinstance(value, bool) and bool not in kinds:
        return False
    return isinstance(value, kinds)


def check_line(raw: bytes, schema: dict[str, pl.DataType], required: tuple[str, ...]) -> str | None:
    """Why a line is malformed, or None when it is fine."""
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return f"not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})"
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    for name in required:
        if obj.get(name) is None:
            return f"required field {name!r} is missing or null"
    for name, dtype in schema.items():
        if name in obj and not _kind_ok(obj[name], dtype):
            return f"field {name!r} has the wrong type: expected {dtype}, got {type(obj[name]).__name__} {obj[name]!r:.60}"
    return None


def _split(data: bytes, first: int) -> tuple[list[bytes], list[int]]:
    """Non-blank lines of a block and their 1-based line numbers."""
    lines, numbers = [], []
    for i, ln in enumerate(data.split(b"\n")):
        if ln.strip():
            lines.append(ln)
            numbers.append(first + i)
    return lines, numbers


def _slow_parse(lines, numbers, schema, required, path: Path, skip: bool, bad: list[str]) -> pl.DataFrame:
    """Line by line: name (or skip) every malformed line, then parse the rest."""
    keep_l, keep_n = [], []
    for raw, n in zip(lines, numbers):
        why = check_line(raw, schema, required)
        if why is None:
            keep_l.append(raw)
            keep_n.append(n)
        elif skip:
            bad.append(f"line {n}: {why}")
        else:
            raise DataError(f"{path}:{n}: {why} (use --skip-bad-lines to skip such lines)")
    if not keep_l:
        return pl.DataFrame(schema={**schema, "_line": pl.Int64})
    try:
        df = pl.read_ndjson(io.BytesIO(b"\n".join(keep_l)), schema=schema)
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"{path}: lines {keep_n[0]}-{keep_n[-1]}: cannot parse ({exc})") from None
    if df.height != len(keep_l):
        raise DataError(f"{path}: lines {keep_n[0]}-{keep_n[-1]}: {df.height} records from {len(keep_l)} lines")
    return df.with_columns(pl.Series("_line", keep_n, dtype=pl.Int64))


def _parse_block(data: bytes, first: int, schema, required, path: Path, skip: bool, bad: list[str]) -> tuple[pl.DataFrame, int]:
    """Parse a block of complete lines starting at line ``first``; adds ``_line``.

    Returns the frame and the number of blank lines. Fast path: polars parses the
    whole block and there is one record per line. Anything else (a parse error,
    blank lines, a required field null) falls back to the line-by-line check,
    which names the line.
    """
    n_lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    try:
        df = pl.read_ndjson(io.BytesIO(data), schema=schema)
        ok = df.height == n_lines
    except pl.exceptions.PolarsError:
        ok = False
    if ok and required:
        ok = not df.select(pl.any_horizontal([pl.col(c).is_null() for c in required]).any()).item()
    if ok:
        return df.with_columns(pl.int_range(first, first + n_lines, dtype=pl.Int64).alias("_line")), 0
    lines, numbers = _split(data, first)
    return _slow_parse(lines, numbers, schema, required, path, skip, bad), n_lines - len(lines)


def _gunzip(path: Path, desc: str, raw_bytes: int = 4 << 20):
    """Decompressed blocks of a (multi-member) gzip file; errors name the file."""
    total = path.stat().st_size
    with open(path, "rb") as f, bar(total=total, desc=desc, unit="B", unit_scale=True) as b:
        d = zlib.decompressobj(wbits=31)
        started = False
        while True:
            raw = f.read(raw_bytes)
            b.update(len(raw))
            if not raw:
                break
            while raw:
                try:
                    out = d.decompress(raw)
                except zlib.error as exc:
                    yield DataError(f"{path}: corrupt gzip data ({exc}); expected an intact .jsonl.gz file")
                    return
                started = True
                if out:
                    yield out
                if d.eof:  # end of a member: another may follow
                    raw = d.unused_data
                    d = zlib.decompressobj(wbits=31)
                    started = bool(raw)
                else:
                    raw = b""
        if started and not d.eof:
            yield DataError(
                f"{path}: truncated gzip: the stream ends without its end marker; "
                f"the file is incomplete, delete it and download or copy it again"
            )


def _plain(path: Path, desc: str, raw_bytes: int = 4 << 20):
    """Blocks of an uncompressed file (the counterpart of :func:`_gunzip`)."""
    with open(path, "rb") as f, bar(total=path.stat().st_size, desc=desc, unit="B", unit_scale=True) as b:
        while raw := f.read(raw_bytes):
            b.update(len(raw))
            yield raw


def _check_compression(path: Path) -> None:
    """A name without ``.gz`` must not hold gzip data (``.gz`` names are checked by the gunzip)."""
    if path.name.endswith(".gz"):
        return
    with open(path, "rb") as f:
        if f.read(2) == GZIP_MAGIC:
            raise DataError(f"{path}: the file is gzip-compressed but its name does not end in .gz; rename it to {path.name}.gz")


def read_jsonl_blocks(
    path: str | Path,
    schema: dict[str, pl.DataType],
    required: tuple[str, ...] = (),
    skip_bad_lines: bool = False,
    block_filter: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
    desc: str | None = None,
    block_bytes: int = BLOCK_BYTES,
) -> ReadResult:
    """Read the ``schema`` fields of every line; adds ``_line`` (1-based line number).

    The line-naming reader: slower than the scan, but every error names ``file:line``.
    ``block_filter(frame)`` may validate (raise naming ``_line``) and reduce each
    block before it is kept, which bounds memory. Gzip when the name ends in ``.gz``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    _check_compression(path)
    gz = path.name.endswith(".gz")
    frames: list[pl.DataFrame] = []
    bad: list[str] = []
    n_bad_total = 0
    n_blank = 0
    line_no = 0  # lines before the current block
    pending: list[bytes] = []
    pending_size = 0

    def flush(data: bytes) -> None:
        nonlocal line_no, n_bad_total, n_blank
        if not data:
            return
        before = len(bad)
        df, blank = _parse_block(data, line_no + 1, schema, required, path, skip_bad_lines, bad)
        n_bad_total += len(bad) - before
        n_blank += blank
        del bad[5:]
        line_no += data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        if block_filter is not None:
            n = df.height
            df = block_filter(df)
            if df.height < n:
                df = _compact(df)
        frames.append(df)

    for out in (_gunzip if gz else _plain)(path, desc or path.name):
        if isinstance(out, DataError):
            complete = line_no + sum(p.count(b"\n") for p in pending)
            raise DataError(f"{out} (it breaks off after line {complete})")
        pending.append(out)
        pending_size += len(out)
        if pending_size >= block_bytes:
            data = b"".join(pending)
            cut = data.rfind(b"\n")
            if cut < 0:
                pending, pending_size = [data], len(data)
                continue
            pending, pending_size = [data[cut + 1 :]], len(data) - cut - 1
            flush(data[: cut + 1])
    flush(b"".join(pending))
    frame = _concat(frames, schema)
    return ReadResult(frame=frame, lines=line_no, bad_lines=n_bad_total, first_bad=bad[:5], blank_lines=n_blank)


def _concat(frames: list[pl.DataFrame], schema) -> pl.DataFrame:
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema={**schema, "_line": pl.Int64})


def _compact(df: pl.DataFrame) -> pl.DataFrame:
    """A filtered frame still holds its source's string buffers (polars string views
    share them); copying through arrow keeps only its own rows."""
    return pl.from_arrow(df.to_arrow(compat_level=pl.CompatLevel.oldest()))


class _NeedsLineReader(Exception):
    """The scan met something that only the line-naming reader can explain."""


def _scan(path: Path, schema, required, batch_filter, desc: str) -> ReadResult:
    """The fast path: polars' streaming NDJSON scan, each batch reduced as it arrives.

    ``_line`` is the record number here, which equals the line number when the
    file has no blank lines (polars skips them). It only orders records: no error
    message comes from this path.
    """
    names = list(schema)
    lf = pl.scan_ndjson(path, schema=schema, row_index_name="_line", row_index_offset=1)
    null_required = pl.any_horizontal([pl.col(c).is_null() for c in required]).any() if required else None
    frames: list[pl.DataFrame] = []
    n = 0
    with bar(desc=desc, unit=" records", unit_scale=True) as b:
        for batch in lf.collect_batches(chunk_size=SCAN_BATCH_ROWS, engine="streaming"):
            if null_required is not None and batch.select(null_required).item():
                raise _NeedsLineReader(f"a required field is null near record {n + 1}")
            n += batch.height
            b.update(batch.height)
            batch = batch.select(*names, pl.col("_line").cast(pl.Int64))
            if batch_filter is not None:
                m = batch.height
                try:
                    batch = batch_filter(batch)
                except DataError as exc:
                    raise _NeedsLineReader(str(exc)) from None
                if batch.height < m:
                    batch = _compact(batch)
            frames.append(batch)
    frame = _concat(frames, schema)
    return ReadResult(frame=frame, lines=n, bad_lines=0, first_bad=[], fast=True)


def read_jsonl(
    path: str | Path,
    schema: dict[str, pl.DataType],
    required: tuple[str, ...] = (),
    skip_bad_lines: bool = False,
    block_filter: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
    desc: str | None = None,
) -> ReadResult:
    """Read the ``schema`` fields of a ``.jsonl`` or ``.jsonl.gz`` file, fast when it is clean.

    The native scan reads the file; when it fails or finds a required field null,
    or ``block_filter`` raises, the file is read again by :func:`read_jsonl_blocks`,
    which names the offending line (or skips and counts bad lines with
    ``skip_bad_lines``). The two paths give the same rows; ``_line`` orders them.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    _check_compression(path)
    with open(path, "rb") as f:
        gzip_ok = f.read(2) == GZIP_MAGIC
    if NATIVE_SCAN and (gzip_ok or not path.name.endswith(".gz")):  # a .gz name without gzip data: the block reader says so
        try:
            return _scan(path, schema, required, block_filter, desc or path.name)
        except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError, _NeedsLineReader) as exc:
            log.info("%s: the fast scan stopped (%s); reading again line by line to name the problem", path, str(exc)[:200])
    return read_jsonl_blocks(path, schema, required, skip_bad_lines, block_filter, desc)
