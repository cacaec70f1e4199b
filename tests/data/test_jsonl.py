"""The streaming jsonl.gz reader: line numbers across blocks, blank lines, gzip damage."""

from __future__ import annotations

import gzip
import json

import polars as pl
import pytest

from r2bench.data.jsonl import read_jsonl_blocks
from r2bench.errors import DataError

SCHEMA = {"id": pl.String, "n": pl.Int64}


def _lines(k):
    return [json.dumps({"id": f"r{i}", "n": i, "other": [1, {"x": "y"}]}) for i in range(k)]


@pytest.mark.parametrize("block_bytes", [64, 1 << 20])
def test_line_numbers_across_blocks_and_blank_lines(tmp_path, block_bytes):
    lines = _lines(50)
    lines.insert(10, "")
    lines.insert(30, "   ")
    p = tmp_path / "a.jsonl.gz"
    p.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    r = read_jsonl_blocks(p, SCHEMA, ("id",), block_bytes=block_bytes)
    assert r.frame["id"].to_list() == [f"r{i}" for i in range(50)]
    want = [i + 1 for i, ln in enumerate(lines) if ln.strip()]
    assert r.frame["_line"].to_list() == want
    assert r.lines == len(lines)


def test_multi_member_gzip_and_no_trailing_newline(tmp_path):
    lines = _lines(20)
    p = tmp_path / "m.jsonl.gz"
    p.write_bytes(gzip.compress(("\n".join(lines[:7]) + "\n").encode()) + gzip.compress("\n".join(lines[7:]).encode()))
    r = read_jsonl_blocks(p, SCHEMA, block_bytes=50)
    assert r.frame["n"].to_list() == list(range(20)) and r.frame["_line"].to_list() == list(range(1, 21))


def test_bad_line_number_in_a_later_block(tmp_path):
    lines = _lines(40)
    lines[33] = '{"id": "r33", "n": "thirty-three"}'
    p = tmp_path / "b.jsonl.gz"
    p.write_bytes(gzip.compress("\n".join(lines).encode()))
    with pytest.raises(DataError, match=r"b\.jsonl\.gz:34: field 'n' has the wrong type"):
        read_jsonl_blocks(p, SCHEMA, block_bytes=100)
    r = read_jsonl_blocks(p, SCHEMA, skip_bad_lines=True, block_bytes=100)
    assert r.bad_lines == 1 and 33 not in r.frame["n"].to_list() and r.first_bad == [
        "line 34: field 'n' has the wrong type: expected Int64, got str 'thirty-three'"
    ]


def test_not_a_gzip_file(tmp_path):
    p = tmp_path / "plain.jsonl.gz"
    p.write_text("\n".join(_lines(3)))
    with pytest.raises(DataError, match=r"plain\.jsonl\.gz: corrupt gzip data"):
        read_jsonl_blocks(p, SCHEMA)


def test_truncated_names_the_last_complete_line(tmp_path):
    p = tmp_path / "t.jsonl.gz"
    blob = gzip.compress(("\n".join(_lines(2000)) + "\n").encode())
    p.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"t\.jsonl\.gz: truncated gzip.*breaks off after line \d+"):
        read_jsonl_blocks(p, SCHEMA, block_bytes=1000)


def test_block_filter_reduces_each_block(tmp_path):
    p = tmp_path / "f.jsonl.gz"
    p.write_bytes(gzip.compress("\n".join(_lines(100)).encode()))
    r = read_jsonl_blocks(p, SCHEMA, block_bytes=200, block_filter=lambda df: df.filter(pl.col("n") % 10 == 0))
    assert r.frame["n"].to_list() == list(range(0, 100, 10)) and r.lines == 100


# ---------------------------------------------------------------- read_jsonl: the native scan, the block reader on errors

from r2bench.data import jsonl  # noqa: E402
from r2bench.data.jsonl import read_jsonl  # noqa: E402


def _write(p, lines, gz=True):
    data = ("\n".join(lines) + "\n").encode()
    p.write_bytes(gzip.compress(data) if gz else data)
    return p


@pytest.mark.parametrize("name, batch_rows", [("c.jsonl.gz", 100_000), ("c.jsonl", 100_000), ("c.jsonl.gz", 97)])
def test_clean_file_takes_the_scan_and_matches_the_block_reader(tmp_path, monkeypatch, name, batch_rows):
    monkeypatch.setattr(jsonl, "SCAN_BATCH_ROWS", batch_rows)
    p = _write(tmp_path / name, _lines(3000), gz=name.endswith(".gz"))
    keep = lambda df: df.filter(pl.col("n") % 7 != 0)  # noqa: E731
    fast = read_jsonl(p, SCHEMA, ("id",), block_filter=keep)
    slow = read_jsonl_blocks(p, SCHEMA, ("id",), block_filter=keep, block_bytes=10_000)
    assert fast.fast and not slow.fast
    assert fast.frame.equals(slow.frame) and fast.frame.columns == ["id", "n", "_line"]
    assert fast.frame["_line"].to_list() == [i + 1 for i in range(3000) if i % 7]
    assert fast.lines == fast.records == slow.records == 3000


def test_bad_line_goes_to_the_line_reader(tmp_path):
    lines = _lines(500)
    lines[411] = '{"id": "r411", "n": 4.5}'
    p = _write(tmp_path / "bad.jsonl.gz", lines)
    with pytest.raises(DataError, match=r"bad\.jsonl\.gz:412: field 'n' has the wrong type"):
        read_jsonl(p, SCHEMA)
    r = read_jsonl(p, SCHEMA, skip_bad_lines=True)
    assert not r.fast and r.bad_lines == 1 and r.records == 500 and r.frame.height == 499


def test_null_required_field_goes_to_the_line_reader(tmp_path):
    lines = _lines(40)
    lines[20] = '{"n": 20}'
    p = _write(tmp_path / "req.jsonl", lines, gz=False)
    assert read_jsonl(p, SCHEMA).frame.height == 40  # not required: the scan keeps it
    with pytest.raises(DataError, match=r"req\.jsonl:21: required field 'id' is missing"):
        read_jsonl(p, SCHEMA, ("id",))


def test_filter_error_names_the_real_line_despite_blank_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonl, "SCAN_BATCH_ROWS", 4)  # the error comes from a later batch
    lines = _lines(30)
    lines[5:5] = ["", "  "]  # the scan skips blank lines, so its record numbers lag two behind
    p = _write(tmp_path / "blank.jsonl.gz", lines)

    def check(df):
        hit = df.filter(pl.col("n") == 17)
        if hit.height:
            raise DataError(f"{p}:{hit['_line'][0]}: n is 17")
        return df

    with pytest.raises(DataError, match=r"blank\.jsonl\.gz:20: n is 17"):
        read_jsonl(p, SCHEMA, block_filter=check)
    r = read_jsonl(p, SCHEMA)
    assert r.fast and r.records == 30 and r.frame["n"].to_list() == list(range(30))


def test_truncated_and_misnamed_files(tmp_path):
    blob = gzip.compress(("\n".join(_lines(3000)) + "\n").encode())
    t = tmp_path / "t.jsonl.gz"
    t.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"t\.jsonl\.gz: truncated gzip.*breaks off after line \d+"):
        read_jsonl(t, SCHEMA)
    plain_named_gz = _write(tmp_path / "p.jsonl.gz", _lines(3), gz=False)
    with pytest.raises(DataError, match=r"p\.jsonl\.gz: corrupt gzip data"):
        read_jsonl(plain_named_gz, SCHEMA)
    gz_named_plain = tmp_path / "g.jsonl"
    gz_named_plain.write_bytes(blob)
    with pytest.raises(DataError, match=r"g\.jsonl: the file is gzip-compressed.*rename it to g\.jsonl\.gz"):
        read_jsonl(gz_named_plain, SCHEMA)


def test_multi_member_gzip_through_the_scan(tmp_path):
    lines = _lines(20)
    p = tmp_path / "m.jsonl.gz"
    p.write_bytes(gzip.compress(("\n".join(lines[:7]) + "\n").encode()) + gzip.compress("\n".join(lines[7:]).encode()))
    r = read_jsonl(p, SCHEMA)
    assert r.fast and r.frame["n"].to_list() == list(range(20)) and r.frame["_line"].to_list() == list(range(1, 21))
