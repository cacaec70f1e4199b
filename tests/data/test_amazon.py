"""Amazon Reviews 2023 from generated raw files: end to end and every bad-input case."""

from __future__ import annotations

import json

import polars as pl
import pytest

from r2bench.cli import main
from r2bench.data.benchmark import load_benchmark
from r2bench.data.prepare import prepare
from r2bench.errors import DataError
from tests.data.amazon_fixtures import (
    DAY_MS,
    WINDOW_END_MS,
    WINDOW_START_MS,
    review_record,
    reviews_for,
    write_category,
)


def _prep(raw, **kw):
    return prepare("amazon-video-games", raw_dir=raw, **kw)


def _assert_nothing_prepared(home):
    root = home / "benchmarks" / "amazon-video-games"
    assert not root.exists() or not [p for p in root.iterdir() if not p.name.startswith(".")]


def test_raw_dir_end_to_end(tmp_path):
    write_category(tmp_path)
    b = _prep(tmp_path)
    inter = b.interactions
    assert inter["timestamp"].min() >= WINDOW_START_MS and inter["timestamp"].max() < WINDOW_END_MS
    assert inter.select("user_id", "item_id").is_duplicated().sum() == 0
    titles = b.items["title"].to_list()
    assert all("&amp;" not in t and "<span id" not in t and len(t.split()) <= 20 and len(t) > 1 for t in titles)
    assert any("& Stand" in t for t in titles)  # HTML entities unescaped
    assert b.item_text_fields == ["average_rating", "rating_number", "store", "main_category", "categories", "description"]
    desc = [d for d in b.items["description"].to_list() if d]
    assert desc and max(len(d.split()) for d in desc) == 100
    assert set(b.items["item_id"]) == set(inter["item_id"])  # joined on parent_asin, not asin
    assert all(i.startswith("B") for i in b.items["item_id"])
    m = b.manifest
    assert m["spec"]["window_start_ms"] == WINDOW_START_MS and m["spec"]["title_rule"] == "r2ec"
    assert [f["name"] for f in m["source"]["files"]] == ["Video_Games.jsonl.gz", "meta_Video_Games.jsonl.gz"]
    assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in m["source"]["files"])
    assert m["stats"]["users"] == inter["user_id"].n_unique()
    # a second prepare is identical
    assert _prep(tmp_path).fingerprint == b.fingerprint


def test_dedup_keeps_earliest_even_before_the_window(tmp_path):
    reviews = reviews_for(40, 60, seed=1)
    u = "AG_dup_user"
    early = review_record(u, 5, WINDOW_START_MS - 10 * DAY_MS, __import__("random").Random(0))
    again = dict(early, timestamp=WINDOW_START_MS + 10 * DAY_MS)
    others = [dict(early, parent_asin=f"B{j:09d}", timestamp=WINDOW_START_MS + (20 + j) * DAY_MS) for j in (8, 9)]
    write_category(tmp_path, reviews=reviews + [again, early, *others], n_items=60)
    b = _prep(tmp_path)
    rows = b.interactions.filter(pl.col("user_id") == u)
    # the earliest review of item 5 is before the window, so the pair is out
    assert rows["item_id"].to_list() == ["B000000008", "B000000009"]


def test_cli_raw_dir_and_window_override(tmp_path, capsys):
    write_category(tmp_path)
    rc = main(["prepare", "amazon-video-games", "--raw-dir", str(tmp_path), "--window-start", "none",
               "--window-end", "2030-01-01"])
    assert rc == 0, capsys.readouterr().err
    b = load_benchmark("amazon-video-games")
    assert b.manifest["spec"]["window_start_ms"] is None
    assert b.interactions["timestamp"].min() < WINDOW_START_MS


def test_truncated_gzip(tmp_path, _isolated_home):
    write_category(tmp_path, truncate_reviews=200)
    with pytest.raises(DataError, match=r"Video_Games\.jsonl\.gz: truncated gzip"):
        _prep(tmp_path)
    _assert_nothing_prepared(_isolated_home)


def test_line_that_is_not_json(tmp_path, _isolated_home):
    reviews = reviews_for(30, 60, 0)
    write_category(tmp_path, reviews=reviews, extra_review_lines=['{"user_id": "x", "parent_asin": '])
    with pytest.raises(DataError, match=rf"Video_Games\.jsonl\.gz:{len(reviews) + 1}: not valid JSON"):
        _prep(tmp_path)
    _assert_nothing_prepared(_isolated_home)


def test_skip_bad_lines_counts_them(tmp_path):
    reviews = reviews_for(30, 60, 0)
    bad = ["not json at all", json.dumps({"parent_asin": "B000000001", "timestamp": WINDOW_START_MS + 5})]
    write_category(tmp_path, reviews=reviews, extra_review_lines=bad, extra_meta_lines=["[1, 2]"])
    b = _prep(tmp_path, skip_bad_lines=True)
    src = b.manifest["source"]
    assert src["bad_lines_skipped"] == 3
    assert any(f":{len(reviews) + 1}" in e or f"line {len(reviews) + 1}:" in e for e in src["bad_line_examples"])
    assert src["lines"]["reviews"] == len(reviews) + 2


def test_missing_required_field(tmp_path):
    reviews = reviews_for(30, 60, 0)
    rec = review_record("AGx", 1, WINDOW_START_MS + 1000, __import__("random").Random(0))
    del rec["user_id"]
    write_category(tmp_path, reviews=reviews[:10] + [rec] + reviews[10:])
    with pytest.raises(DataError, match=r"Video_Games\.jsonl\.gz:11: required field 'user_id' is missing"):
        _prep(tmp_path)


def test_wrong_type(tmp_path):
    reviews = reviews_for(30, 60, 0)
    rec = review_record("AGx", 1, WINDOW_START_MS + 1000, __import__("random").Random(0))
    rec["timestamp"] = "yesterday"
    write_category(tmp_path, reviews=reviews[:4] + [rec] + reviews[4:])
    with pytest.raises(DataError, match=r"Video_Games\.jsonl\.gz:5: field 'timestamp' has the wrong type"):
        _prep(tmp_path)


def test_wrong_type_in_metadata(tmp_path):
    write_category(tmp_path, extra_meta_lines=[json.dumps({"parent_asin": "B9", "title": "T", "categories": "Games"})])
    with pytest.raises(DataError, match=r"meta_Video_Games\.jsonl\.gz:76: field 'categories' has the wrong type"):
        _prep(tmp_path)


def test_second_resolution_timestamps(tmp_path):
    reviews = reviews_for(30, 60, 0)
    for r in reviews:
        r["timestamp"] //= 1000
    write_category(tmp_path, reviews=reviews)
    with pytest.raises(DataError, match=r"Video_Games\.jsonl\.gz:1: timestamp \d+ is not in milliseconds"):
        _prep(tmp_path)


def test_empty_window(tmp_path):
    reviews = reviews_for(30, 60, 0)
    for r in reviews:
        r["timestamp"] = WINDOW_START_MS - 400 * DAY_MS + r["timestamp"] % DAY_MS
    write_category(tmp_path, reviews=reviews)
    with pytest.raises(DataError, match="no interactions left in the window"):
        _prep(tmp_path)


def test_too_few_items_for_negatives(tmp_path):
    write_category(tmp_path, n_users=40, n_items=12)
    with pytest.raises(DataError, match="too few items to draw 19 negatives"):
        _prep(tmp_path)


def test_missing_raw_files(tmp_path, capsys):
    rc = main(["prepare", "amazon-video-games", "--raw-dir", str(tmp_path)])
    assert rc == 2
    assert "missing Video_Games.jsonl.gz, meta_Video_Games.jsonl.gz" in capsys.readouterr().err


def test_unknown_amazon_name_suggests(capsys):
    assert main(["prepare", "amazon-video-game"]) == 2
    assert "did you mean 'amazon-video-games'" in capsys.readouterr().err


def test_window_prefilter_does_not_change_the_result(tmp_path):
    """Dropping rows early (the source's window hint) builds exactly what reading everything builds."""
    from r2bench.data.build import build_benchmark
    from r2bench.data.prepare import make_source, resolve_spec

    reviews = reviews_for(60, 75, seed=4)
    # pre-window duplicates of in-window pairs, which the pre-filter must keep
    reviews += [dict(r, timestamp=WINDOW_START_MS - DAY_MS) for r in reviews[:15] if r["timestamp"] >= WINDOW_START_MS]
    write_category(tmp_path, reviews=reviews)
    source = make_source("amazon-video-games", raw_dir=tmp_path)
    spec = resolve_spec(source.spec_defaults, {})
    full = source.load()  # no hint: every line kept
    assert full.interactions.height == len(reviews)
    source.window = (spec.window_start_ms, spec.window_end_ms)
    hinted = source.load()
    assert hinted.interactions.height < full.interactions.height
    a = build_benchmark("amazon-video-games", full.interactions, full.items, spec)
    b = build_benchmark("amazon-video-games", hinted.interactions, hinted.items, spec)
    assert a.instances.equals(b.instances) and a.items.equals(b.items) and a.interactions.equals(b.interactions)


def _gunzip_in_place(path):
    import gzip
    import hashlib

    plain = path.with_name(path.name.removesuffix(".gz"))
    plain.write_bytes(gzip.decompress(path.read_bytes()))
    path.unlink()
    return plain, hashlib.sha256(plain.read_bytes()).hexdigest()


def test_raw_dir_accepts_uncompressed_jsonl(tmp_path):
    gz_dir, plain_dir = tmp_path / "gz", tmp_path / "plain"
    write_category(gz_dir)
    write_category(plain_dir)
    from_gz = _prep(gz_dir, root=tmp_path / "from-gz")  # another folder: a same-fingerprint prepare keeps the first manifest
    reviews, r_sha = _gunzip_in_place(plain_dir / "Video_Games.jsonl.gz")
    b = _prep(plain_dir)  # reviews uncompressed, metadata still gzip
    assert b.fingerprint == from_gz.fingerprint
    files = b.manifest["source"]["files"]
    assert files[0] == {"name": "Video_Games.jsonl", "bytes": reviews.stat().st_size, "sha256": r_sha}
    assert files[1]["name"] == "meta_Video_Games.jsonl.gz"
    meta, m_sha = _gunzip_in_place(plain_dir / "meta_Video_Games.jsonl.gz")
    c = _prep(plain_dir, root=tmp_path / "all-plain")
    assert c.fingerprint == from_gz.fingerprint and c.manifest["source"]["files"][1]["sha256"] == m_sha


def test_raw_dir_with_both_forms_is_refused(tmp_path):
    write_category(tmp_path)
    _gunzip_in_place(tmp_path / "Video_Games.jsonl.gz")
    write_category(tmp_path)  # the .gz again, beside the .jsonl
    with pytest.raises(DataError, match=r"both Video_Games\.jsonl\.gz and Video_Games\.jsonl are there; keep one"):
        _prep(tmp_path)


def test_bad_line_in_uncompressed_reviews(tmp_path):
    reviews = reviews_for(30, 60, 0)
    write_category(tmp_path, reviews=reviews, extra_review_lines=['{"user_id": "x", "parent_asin": '])
    _gunzip_in_place(tmp_path / "Video_Games.jsonl.gz")
    with pytest.raises(DataError, match=rf"Video_Games\.jsonl:{len(reviews) + 1}: not valid JSON"):
        _prep(tmp_path)
