"""Content fingerprints: a function of the rows, not of the parquet bytes."""

from __future__ import annotations

import json

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from r2bench.cli import main
from r2bench.data.benchmark import FILES, load_benchmark
from r2bench.data.fingerprint import table_digest
from r2bench.data.store import verify_benchmark
from r2bench.data.synthetic import make_synthetic_benchmark
from r2bench.errors import R2BenchError


@pytest.fixture()
def bench(tmp_path):
    return load_benchmark(make_synthetic_benchmark(tmp_path / "b", n_users=30, n_items=50, seed=3))


def _rewrite(folder, **settings):
    for name in FILES:
        table = pq.read_table(folder / name)
        pq.write_table(table, folder / name, **settings)


@pytest.mark.parametrize("settings", [
    dict(compression="none", use_dictionary=False, write_statistics=False),
    dict(compression="snappy", row_group_size=7, data_page_size=64),
    dict(compression="gzip", version="1.0", store_schema=True, write_page_index=True),
])
def test_other_parquet_settings_keep_the_fingerprint(bench, settings):
    before = {n: (bench.path / n).read_bytes() for n in FILES}
    _rewrite(bench.path, **settings)
    assert any((bench.path / n).read_bytes() != before[n] for n in FILES)  # the bytes did change
    assert verify_benchmark(bench.path)["fingerprint"] == bench.fingerprint


def test_one_changed_candidate_is_named(bench, capsys):
    inst = pl.read_parquet(bench.path / "instances.parquet")
    cands = inst["candidates"].to_list()
    other = next(i for i in inst["candidates"][1] if i not in cands[0])
    cands[0] = [other if j == (inst["target_index"][0] + 1) % 20 else c for j, c in enumerate(cands[0])]
    inst.with_columns(pl.Series("candidates", cands)).write_parquet(bench.path / "instances.parquet")
    with pytest.raises(R2BenchError, match="table 'instances' differs") as exc:
        verify_benchmark(bench.path)
    assert "items" not in str(exc.value) and "interactions" not in str(exc.value)
    assert main(["verify", str(bench.path)]) == 1
    assert "MISMATCH" in capsys.readouterr().err


def test_verify_cli_ok_and_edited_manifest(bench, capsys):
    assert main(["verify", str(bench.path)]) == 0
    assert bench.fingerprint[:12] in capsys.readouterr().out
    m = json.loads((bench.path / "manifest.json").read_text())
    m["spec"]["seed"] = 99  # the fingerprint no longer hashes what the manifest says
    (bench.path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(R2BenchError, match="manifest.json was edited"):
        verify_benchmark(bench.path)


def test_byte_fingerprint_manifest_is_explained(bench):
    m = json.loads((bench.path / "manifest.json").read_text())
    for key in ("tables", "encoding"):
        m.pop(key)
    m["schema"] = "r2bench.benchmark/1"
    (bench.path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(R2BenchError, match="fingerprinted parquet bytes.*r2bench prepare"):
        verify_benchmark(bench.path)


def test_digest_ignores_layout_but_not_content():
    df = pl.DataFrame({
        "s": ["a", None, "ccc", ""],
        "l": [["x", "y"], [], None, ["z"]],
        "i": pl.Series([1, None, 3, 4], dtype=pl.Int64),
        "f": [0.5, float("nan"), None, -1.0],
        "b": [True, False, None, True],
    })
    d = table_digest(df)
    assert table_digest(pl.concat([df.head(1), df.tail(3)], rechunk=False)) == d  # chunking
    table = df.to_arrow()
    small = pa.table({  # 32-bit offsets instead of large string/list layouts
        "s": table["s"].cast(pa.string()), "l": table["l"].cast(pa.list_(pa.string())),
        "i": table["i"], "f": table["f"], "b": table["b"],
    })
    assert table_digest(small) == d
    assert table_digest(df.with_columns(pl.col("s").cast(pl.Categorical))) == d  # dictionary-encoded strings
    nan2 = df.with_columns(pl.Series("f", [0.5, float("-nan"), None, -1.0]))
    assert table_digest(nan2) == d  # every NaN is one NaN
    changed = [
        df.with_columns(pl.Series("s", ["a", None, "cc", "c"])),            # same bytes, other split
        df.with_columns(pl.Series("l", [["x"], ["y"], None, ["z"]])),        # same elements, other lists
        df.with_columns(pl.Series("l", [["x", "y"], None, [], ["z"]])),      # empty vs null list
        df.with_columns(pl.Series("s", ["a", "", "ccc", ""])),              # null vs empty string
        df.with_columns(pl.col("i").cast(pl.Int32)),                         # the type counts
        df.select(["l", "s", "i", "f", "b"]),                                 # column order counts
        df.rename({"b": "c"}),                                                # names count
        df.reverse(),                                                         # row order counts
    ]
    digests = [table_digest(x) for x in changed]
    assert d not in digests and len(set(digests)) == len(digests)
