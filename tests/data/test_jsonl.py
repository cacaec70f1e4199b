"""The streaming jsonl.gz reader: line numbers across blocks, blank lines, gzip damage."""

from __future__ import annotations

import gzip
import json

import polars as pl
import pytest

from r2bench.data.jsonl import read_jsonl_gz
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
    r = read_jsonl_gz(p, SCHEMA, ("id",), block_bytes=block_bytes)
    assert r.frame["id"].to_list() == [f"r{i}" for i in range(50)]
    want = [i + 1 for i, ln in enumerate(lines) if ln.strip()]
    assert r.frame["_line"].to_list() == want
    assert r.lines == len(lines)


def test_multi_member_gzip_and_no_trailing_newline(tmp_path):
    lines = _lines(20)
    p = tmp_path / "m.jsonl.gz"
    p.write_bytes(gzip.compress(("\n".join(lines[:7]) + "\n").encode()) + gzip.compress("\n".join(lines[7:]).encode()))
    r = read_jsonl_gz(p, SCHEMA, block_bytes=50)
    assert r.frame["n"].to_list() == list(range(20)) and r.frame["_line"].to_list() == list(range(1, 21))


def test_bad_line_number_in_a_later_block(tmp_path):
    lines = _lines(40)
    lines[33] = '{"id": "r33", "n": "thirty-three"}'
    p = tmp_path / "b.jsonl.gz"
    p.write_bytes(gzip.compress("\n".join(lines).encode()))
    with pytest.raises(DataError, match=r"b\.jsonl\.gz:34: field 'n' has the wrong type"):
        read_jsonl_gz(p, SCHEMA, block_bytes=100)
    r = read_jsonl_gz(p, SCHEMA, skip_bad_lines=True, block_bytes=100)
    assert r.bad_lines == 1 and 33 not in r.frame["n"].to_list() and r.first_bad == [
        "line 34: field 'n' has the wrong type: expected Int64, got str 'thirty-three'"
    ]


def test_not_a_gzip_file(tmp_path):
    p = tmp_path / "plain.jsonl.gz"
    p.write_text("\n".join(_lines(3)))
    with pytest.raises(DataError, match=r"plain\.jsonl\.gz: corrupt gzip data"):
        read_jsonl_gz(p, SCHEMA)


def test_truncated_names_the_last_complete_line(tmp_path):
    p = tmp_path / "t.jsonl.gz"
    blob = gzip.compress(("\n".join(_lines(2000)) + "\n").encode())
    p.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"t\.jsonl\.gz: truncated gzip.*breaks off after line \d+"):
        read_jsonl_gz(p, SCHEMA, block_bytes=1000)


def test_block_filter_reduces_each_block(tmp_path):
    p = tmp_path / "f.jsonl.gz"
    p.write_bytes(gzip.compress("\n".join(_lines(100)).encode()))
    r = read_jsonl_gz(p, SCHEMA, block_bytes=200, block_filter=lambda df: df.filter(pl.col("n") % 10 == 0))
    assert r.frame["n"].to_list() == list(range(0, 100, 10)) and r.lines == 100
