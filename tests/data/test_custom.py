"""The ``custom`` dataset: a YAML spec over the user's parquet/csv files."""

from __future__ import annotations

import polars as pl
import pytest

from r2bench.cli import main
from r2bench.data.benchmark import load_benchmark
from r2bench.data.prepare import prepare
from r2bench.data.synthetic import synthetic_frames
from r2bench.errors import DataError


def _write(tmp_path, unit="s", fmt="parquet"):
    inter, items, users = synthetic_frames(40, 60, seed=3, max_len=12)
    div = {"s": 1000, "ms": 1}[unit]
    inter = inter.rename({"user_id": "uid", "item_id": "sku", "timestamp": "ts"}).with_columns(pl.col("ts") // div)
    if fmt == "parquet":
        inter.write_parquet(tmp_path / "inter.parquet")
    else:
        inter.write_csv(tmp_path / "inter.csv")
    items.rename({"item_id": "sku", "title": "name"}).with_columns(pl.lit("x").alias("internal")).write_csv(tmp_path / "items.csv")
    users.write_csv(tmp_path / "users.csv")
    spec = tmp_path / "shop.yaml"
    spec.write_text(
        "name: my-shop\n"
        "interactions:\n"
        f"  path: inter.{fmt}\n"
        f"  timestamp_unit: {unit}\n"
        "  columns: {user_id: uid, item_id: sku, timestamp: ts}\n"
        "items:\n"
        "  path: items.csv\n"
        "  columns: {item_id: sku, title: name}\n"
        "  text_fields: [genre, year]\n"
        "users:\n"
        "  path: users.csv\n"
        "  fields: [age, occupation]\n"
    )
    return spec, inter


def test_custom_parquet_end_to_end(tmp_path):
    spec, inter = _write(tmp_path)
    b = prepare("custom", spec_file=spec)
    assert b.name == "my-shop" and b.path.parent.name == "my-shop"
    assert load_benchmark("my-shop").fingerprint == b.fingerprint
    assert b.item_text_fields == ["genre", "year"] and b.profile_fields == ["age", "occupation"]
    assert b.interactions.height == inter.height
    assert b.interactions["timestamp"].min() == inter["ts"].min() * 1000
    assert "profile_age" in b.instances.columns and "profile_gender" not in b.instances.columns
    assert b.manifest["source"]["timestamp_unit"] == "s"
    assert len(b.manifest["source"]["files"]) == 3
    card = (b.path / "card.md").read_text()  # no committed card for a custom dataset: a generic one
    assert card.startswith("# Data card: my-shop") and f"| interactions | {inter.height:,} |" in card


def test_custom_csv_via_cli_with_window(tmp_path, capsys):
    spec, inter = _write(tmp_path, unit="ms", fmt="csv")
    cut = int(inter["ts"].median())
    spec.write_text(spec.read_text() + f"window: {{start: {cut}}}\nbuild: {{history_len: 4}}\n")
    assert main(["prepare", "custom", "--spec", str(spec)]) == 0, capsys.readouterr().err
    b = load_benchmark("my-shop")
    assert b.interactions["timestamp"].min() >= cut
    assert b.manifest["spec"]["history_len"] == 4 and b.manifest["spec"]["window_start_ms"] == cut


def test_custom_wrong_unit_is_detected(tmp_path):
    spec, _ = _write(tmp_path, unit="s")
    spec.write_text(spec.read_text().replace("timestamp_unit: s", "timestamp_unit: ms"))
    with pytest.raises(DataError, match="not in milliseconds.*timestamp unit"):
        prepare("custom", spec_file=spec)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace("name: my-shop", "name: movielens-100k"), "is a registered dataset"),
        (lambda t: t.replace("name: my-shop", "name: My Shop!"), "'name' must be a lowercase"),
        (lambda t: t.replace("ts}", "time}"), "missing column 'time' for timestamp"),
        (lambda t: t.replace("path: items.csv", "path: nope.csv"), "file not found"),
        (lambda t: t.replace("[genre, year]", "[genre, colour]"), "text field.*colour"),
        (lambda t: t + "build: {histroy_len: 3}\n", "unknown build parameter.*histroy_len"),
    ],
)
def test_custom_spec_errors(tmp_path, edit, message):
    spec, _ = _write(tmp_path)
    spec.write_text(edit(spec.read_text()))
    with pytest.raises(DataError, match=message):
        prepare("custom", spec_file=spec)


def test_custom_needs_spec(capsys):
    assert main(["prepare", "custom"]) == 2
    assert "--spec FILE" in capsys.readouterr().err
