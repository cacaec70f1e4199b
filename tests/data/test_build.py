"""The construction pipeline on generated data: protocol, determinism, storage."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from r2bench.data.benchmark import FILES, LATEST, load_benchmark
from r2bench.data.build import BuildSpec, build_benchmark
from r2bench.data.sampling import stable_hash64
from r2bench.data.store import store_benchmark, verify_benchmark, write_benchmark
from r2bench.data.synthetic import make_synthetic_benchmark, synthetic_frames
from r2bench.errors import DataError


def _digests(folder: Path) -> dict[str, str]:
    return {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in (*FILES, "manifest.json")}


def _inter(rows):
    return pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")


def _filler(t=2_000_000_000_000):
    """Two users that put items i10..i59 into the pool (negatives need a pool)."""
    return [(f"z{k}", f"i{j}", t + j) for k, rng in ((1, range(10, 35)), (2, range(35, 60))) for j in rng]


def _items(n):
    return pl.DataFrame({"item_id": [f"i{j}" for j in range(n)], "title": [f"Item {j}" for j in range(n)]})


def test_tiny_benchmark_contract(tiny_benchmark):
    b = tiny_benchmark
    inst = b.instances
    assert inst["instance_id"].is_unique().all()
    assert inst.schema["history"] == pl.List(pl.String)
    assert inst.schema["target_index"] == pl.Int8
    assert b.profile_fields == ["age", "gender", "occupation"]
    assert b.item_text_fields == ["genre", "year"]
    user_items = b.interactions.group_by("user_id").agg(pl.col("item_id"))
    seen = dict(zip(user_items["user_id"].to_list(), [set(x) for x in user_items["item_id"].to_list()]))
    all_items = set(b.items["item_id"].to_list())
    for r in inst.iter_rows(named=True):
        c = r["candidates"]
        assert len(c) == 20 and len(set(c)) == 20
        assert c[r["target_index"]] == r["target"]
        negs = set(c) - {r["target"]}
        assert not negs & seen[r["user_id"]], "a negative is an item the user interacted with"
        assert negs <= all_items
        assert len(r["history"]) <= 20 and len(r["history"]) == len(r["history_timestamps"])
        assert r["history_timestamps"] == sorted(r["history_timestamps"])
        assert all(t <= r["target_timestamp"] for t in r["history_timestamps"])


def test_instances_follow_protocol(tiny_benchmark):
    b = tiny_benchmark
    seqs = {
        u: g.sort("timestamp")["item_id"].to_list()
        for (u,), g in b.interactions.group_by("user_id", maintain_order=True)
    }
    inst = b.instances
    split_users = {s: set(inst.filter(pl.col("split") == s)["user_id"].to_list()) for s in ("train", "val", "test")}
    assert not (split_users["train"] & split_users["val"]) and not (split_users["train"] & split_users["test"])
    assert not (split_users["val"] & split_users["test"])
    assert sum(len(v) for v in split_users.values()) == len(seqs) == 60
    assert (len(split_users["train"]), len(split_users["val"]), len(split_users["test"])) == (48, 6, 6)
    for s in ("val", "test"):
        part = b.split(s)
        assert part.height == len(split_users[s])
        for r in part.iter_rows(named=True):
            seq = seqs[r["user_id"]]
            assert r["target"] == seq[-1]
            assert r["history"] == seq[:-1][-20:]
    train = b.split("train")
    for u in split_users["train"]:
        rows = train.filter(pl.col("user_id") == u)
        assert rows["target"].to_list() == seqs[u][1:]
        for k, h in enumerate(rows["history"].to_list(), start=1):
            assert h == seqs[u][:k][-20:]
    freq = Counter(train["target"].to_list())
    assert inst["target_train_freq"].to_list() == [freq.get(t, 0) for t in inst["target"].to_list()]


def test_target_positions_spread(tiny_benchmark):
    idx = tiny_benchmark.instances["target_index"].to_numpy()
    assert idx.min() >= 0 and idx.max() <= 19
    assert len(np.unique(idx)) >= 15  # a real shuffle, not a fixed slot


def test_manifest_stats(tiny_benchmark):
    m = tiny_benchmark.manifest
    assert m["stats"]["users"] == 60 and m["stats"]["items"] == 80
    assert m["stats"]["interactions"] == tiny_benchmark.interactions.height
    assert m["stats"]["splits"]["test"]["instances"] == 6
    assert m["spec"]["history_len"] == 20 and m["spec"]["n_candidates"] == 20
    verify_benchmark(tiny_benchmark.path)


def test_byte_identical_and_seed_sensitive(tmp_path):
    a = make_synthetic_benchmark(tmp_path / "a", n_users=30, n_items=50, seed=3)
    b = make_synthetic_benchmark(tmp_path / "b", n_users=30, n_items=50, seed=3)
    c = make_synthetic_benchmark(tmp_path / "c", n_users=30, n_items=50, seed=4)
    assert _digests(a) == _digests(b)
    assert load_benchmark(a).fingerprint == load_benchmark(b).fingerprint
    assert load_benchmark(a).fingerprint != load_benchmark(c).fingerprint


def test_independent_of_input_order():
    inter, items, users = synthetic_frames(40, 60, seed=1)
    spec = BuildSpec(seed=7)
    a = build_benchmark("x", inter, items, spec, users=users)
    shuffled = inter.sample(fraction=1.0, shuffle=True, seed=5)
    b = build_benchmark("x", shuffled, items.reverse(), spec, users=users.reverse())
    assert a.instances.equals(b.instances)
    assert a.interactions.equals(b.interactions)


def test_candidates_do_not_depend_on_other_users():
    """An instance's negatives depend only on (seed, user, position) and that user's items."""
    inter, items, _ = synthetic_frames(30, 60, seed=2)
    spec = BuildSpec(seed=0, split_ratios=(1.0, 0.0, 0.0))
    full = build_benchmark("x", inter, items, spec).instances
    sub = build_benchmark("x", inter.filter(pl.col("user_id") != "u0003"), items, spec).instances
    # same item pool (all items still used) -> identical candidates for the remaining users
    key = ["user_id", "target"]
    j = full.join(sub, on=key, suffix="_sub")
    assert j.height == sub.height
    assert j["candidates"].to_list() == j["candidates_sub"].to_list()


def test_negatives_roughly_uniform():
    inter, items, _ = synthetic_frames(200, 40, seed=0, min_len=2, max_len=3)
    built = build_benchmark("x", inter, items, BuildSpec())
    negs = [c for r in built.instances.iter_rows(named=True) for c in r["candidates"] if c != r["target"]]
    counts = np.array(list(Counter(negs).values()))
    assert len(counts) == 40
    assert counts.max() < 2.0 * counts.mean() and counts.min() > 0.4 * counts.mean()


def test_dedup_window_title_and_short_users():
    inter = _inter(
        [
            ("a", "i1", 2_000_000_000_000), ("a", "i2", 2_000_000_001_000),
            ("a", "i1", 1_999_000_000_000),  # earlier repeat of (a, i1): kept, the later dropped
            ("a", "i3", 2_000_000_002_000),
            ("b", "i2", 2_000_000_000_000),  # b ends with one interaction -> dropped
            ("c", "i1", 2_000_000_000_000), ("c", "bad", 2_000_000_000_500), ("c", "i4", 2_100_000_000_000),
            *_filler(),
        ]
    )
    items = pl.concat([_items(60), pl.DataFrame({"item_id": ["bad"], "title": ["   "]})])
    built = build_benchmark("x", inter, items, BuildSpec(n_candidates=5, window_end_ms=2_050_000_000_000))
    got = built.interactions.filter(pl.col("user_id") < "z").select("user_id", "item_id", "timestamp").rows()
    assert got == [("a", "i1", 1_999_000_000_000), ("a", "i2", 2_000_000_001_000), ("a", "i3", 2_000_000_002_000)]
    assert "bad" not in built.items["item_id"].to_list()


def test_equal_timestamps_keep_source_order():
    t = 1_700_000_000_000
    inter = _inter([("u", "i5", t), ("u", "i2", t), ("u", "i9", t), ("u", "i1", t), *_filler()])
    built = build_benchmark("x", inter, _items(60), BuildSpec(split_ratios=(0.0, 0.0, 1.0)))
    assert built.interactions.filter(pl.col("user_id") == "u")["item_id"].to_list() == ["i5", "i2", "i9", "i1"]
    r = built.instances.filter(pl.col("user_id") == "u").row(0, named=True)
    assert r["history"] == ["i5", "i2", "i9"] and r["target"] == "i1"


def test_history_len_and_k_parameters(tmp_path):
    p = make_synthetic_benchmark(tmp_path / "h", n_users=20, n_items=60, history_len=5, n_candidates=10)
    b = load_benchmark(p)
    assert b.k == 10
    assert max(len(h) for h in b.instances["history"].to_list()) == 5
    assert set(b.instances["candidates"].list.len().to_list()) == {10}


def test_sequential_pattern_is_predictable(tmp_path):
    b = load_benchmark(make_synthetic_benchmark(tmp_path / "s", n_users=20, n_items=50, pattern="sequential"))
    for r in b.instances.iter_rows(named=True):
        last = int(r["history"][-1][1:])
        assert int(r["target"][1:]) == (last + 1) % 50


def test_too_few_items_for_negatives():
    inter = _inter([("u", f"i{j}", 1_700_000_000_000 + j) for j in range(10)])
    with pytest.raises(DataError, match="too few items to draw 19 negatives.*'u'"):
        build_benchmark("x", inter, _items(15), BuildSpec())


def test_seconds_timestamps_detected():
    inter = _inter([("u", "i1", 1_588_687_728), ("u", "i2", 1_588_687_800)])
    with pytest.raises(DataError, match="not in milliseconds"):
        build_benchmark("x", inter, _items(30), BuildSpec(), where="reviews.jsonl")


def test_empty_window_is_an_error():
    inter = _inter([("u", "i1", 1_500_000_000_000), ("u", "i2", 1_500_000_001_000)])
    with pytest.raises(DataError, match="no interactions left in the window"):
        build_benchmark("x", inter, _items(30), BuildSpec(window_start_ms=1_633_046_400_000))


def test_limit_users_is_a_seeded_subset():
    inter, items, _ = synthetic_frames(50, 60, seed=0)
    a = build_benchmark("x", inter, items, BuildSpec(limit_users=10))
    b = build_benchmark("x", inter, items, BuildSpec(limit_users=10))
    assert a.stats["users"] == 10 and a.instances.equals(b.instances)
    assert set(a.items["item_id"]) == set(a.interactions["item_id"])


def test_store_under_home_and_latest(tmp_path, _isolated_home):
    inter, items, users = synthetic_frames(20, 60, seed=0, max_len=10)
    built = build_benchmark("demo", inter, items, BuildSpec(), users=users)
    folder = store_benchmark(built)
    assert folder.parent == _isolated_home / "benchmarks" / "demo"
    assert (folder.parent / LATEST).read_text().strip() == folder.name
    b = load_benchmark("demo")
    assert b.path == folder and b.fingerprint == folder.name
    again = store_benchmark(build_benchmark("demo", inter, items, BuildSpec(), users=users))
    assert again == folder
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []


def test_synthetic_never_writes_home(tmp_path, _isolated_home):
    make_synthetic_benchmark(tmp_path / "x", n_users=10, n_items=40, max_len=10)
    assert not (_isolated_home / "benchmarks").exists()


def test_synthetic_into_nonempty_folder(tmp_path):
    (tmp_path / "other.txt").write_text("keep me")
    p = make_synthetic_benchmark(tmp_path, n_users=10, n_items=40, max_len=10)
    assert p.parent == tmp_path and (tmp_path / "other.txt").read_text() == "keep me"
    assert load_benchmark(p).manifest["stats"]["users"] == 10


def test_write_is_atomic_on_failure(tmp_path, monkeypatch):
    inter, items, _ = synthetic_frames(10, 40, seed=0, max_len=10)
    built = build_benchmark("x", inter, items, BuildSpec())
    import r2bench.data.store as store

    def boom(df, path):
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "write_parquet", boom)
    with pytest.raises(RuntimeError):
        write_benchmark(built, tmp_path / "bench")
    assert not (tmp_path / "bench").exists()
    assert list(tmp_path.iterdir()) == []


def test_stable_hash_is_fixed():
    # a literal value: Python's hash() randomisation or a library change would break it
    assert stable_hash64(0, "split", "u1") == 0x9E4EE8844E96F1EA


def test_interrupted_store_leaves_nothing_that_loads(monkeypatch, _isolated_home):
    import r2bench.data.store as store
    from r2bench.errors import R2BenchError

    inter, items, _ = synthetic_frames(10, 40, seed=0, max_len=10)
    built = build_benchmark("demo", inter, items, BuildSpec())
    calls = []

    def fail_on_third(path, schema, batches):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(path, schema, batches)

    real = store.write_batches
    monkeypatch.setattr(store, "write_batches", fail_on_third)
    with pytest.raises(KeyboardInterrupt):
        store_benchmark(built)
    root = _isolated_home / "benchmarks" / "demo"
    assert [p.name for p in root.iterdir()] == []
    with pytest.raises(R2BenchError, match="not prepared yet|unknown dataset"):
        load_benchmark("demo")


def test_damaged_benchmark_is_replaced_on_prepare(_isolated_home):
    inter, items, _ = synthetic_frames(10, 40, seed=0, max_len=10)
    folder = store_benchmark(build_benchmark("demo", inter, items, BuildSpec()))
    good = _digests(folder)
    (folder / "instances.parquet").write_bytes(b"garbage")
    again = store_benchmark(build_benchmark("demo", inter, items, BuildSpec()))
    assert again == folder and _digests(folder) == good
    verify_benchmark(folder)
