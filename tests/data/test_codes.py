"""The build on integer codes: every fast path equals the plain way, chunking changes nothing."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

import r2bench.data.instances as instances_mod
import r2bench.data.sampling as sampling
from r2bench.data.build import BuildSpec, build_benchmark
from r2bench.data.fingerprint import table_digest
from r2bench.data.ids import IdTable, take_strings
from r2bench.data.instances import shuffle_order
from r2bench.data.interactions import _codes, chronological_order, encode_interactions
from r2bench.data.store import coded_digest
from r2bench.data.synthetic import synthetic_frames


def _plain_codes(values: pl.Series) -> tuple[list, list]:
    distinct = sorted(set(values.to_list()))
    index = {v: i for i, v in enumerate(distinct)}
    return distinct, [index[v] for v in values.to_list()]


def test_codes_sort_like_the_ids_and_survive_a_hash_collision(monkeypatch):
    values = pl.Series(["b", "", "é", "a", "b", "", "日本", "a\u00a0", "ab", "a"])
    distinct, codes = _codes(values)
    assert (distinct.to_list(), codes.tolist()) == _plain_codes(values)
    # every value hashing alike: the check against the values sends it to the exact way
    monkeypatch.setattr(pl.Series, "hash", lambda self, seed=0: pl.Series([7] * len(self), dtype=pl.UInt64))
    distinct, codes = _codes(values)
    assert (distinct.to_list(), codes.tolist()) == _plain_codes(values)


def test_chronological_order_equals_a_sort_by_three_columns():
    rng = np.random.default_rng(0)
    n = 3000
    user = rng.integers(0, 40, n).astype(np.int32)
    ts = rng.integers(0, 30, n) * 1000 + 1_600_000_000_000
    for order in (
        pl.Series("o", rng.permutation(n), dtype=pl.Int64),  # source order shuffled
        pl.Series("o", np.arange(n), dtype=pl.Int64),  # already in source order
        pl.Series("o", rng.integers(0, 50, n), dtype=pl.Int64),  # repeated: ties keep row order
        pl.Series("o", [None if i % 7 == 0 else i for i in range(n)], dtype=pl.Int64),  # nulls first
    ):
        want = pl.DataFrame({"u": user, "t": ts, "o": order, "i": np.arange(n)}).with_row_index("r").sort(
            ["u", "t", "o", "i"], nulls_last=False)["r"].to_numpy()
        assert (chronological_order(user, 40, ts, order) == want).all()
    # timestamps too far apart for the packed key take the general sort
    wide = ts.copy()
    wide[::2] = -(1 << 61)
    order = pl.Series("o", rng.permutation(n), dtype=pl.Int64)
    want = pl.DataFrame({"u": user, "t": wide, "o": order}).with_row_index("r").sort(["u", "t", "o"])["r"].to_numpy()
    assert (chronological_order(user, 40, wide, order) == want).all()


def test_shuffle_equals_the_stable_argsort_even_with_ties(monkeypatch):
    keys = np.random.default_rng(1).integers(0, 1 << 63, 4000).astype(np.uint64)
    for k in (2, 5, 20, 33):
        counters = np.arange(1 << 20, (1 << 20) + k, dtype=np.uint64)
        want = np.argsort(sampling.stream(keys ^ np.uint64(0x5DEECE66D), counters), axis=1, kind="stable")
        assert (shuffle_order(keys, k) == want).all()
    real = sampling.stream

    def tied(keys, counters):  # values equal above the position bits, and exact repeats
        r = real(keys, counters)
        r[:, 1] = r[:, 0] ^ np.uint64(3)
        r[::3, 2] = r[::3, 0]
        return r

    monkeypatch.setattr(instances_mod, "stream", tied)
    counters = np.arange(1 << 20, (1 << 20) + 20, dtype=np.uint64)
    want = np.argsort(tied(keys ^ np.uint64(0x5DEECE66D), counters), axis=1, kind="stable")
    assert (shuffle_order(keys, 20) == want).all()


@pytest.mark.parametrize("n_items,per_user,n_neg", [(30, 8, 19), (25, 5, 19), (2000, 9, 19), (200, 30, 4)])
def test_negatives_fast_path_equals_the_rejection_loop(n_items, per_user, n_neg):
    rng = np.random.default_rng(n_items)
    n_users = 60
    keys_of = [u * n_items + rng.choice(n_items, min(per_user, n_items - n_neg), replace=False) for u in range(n_users)]
    user_item_keys = np.sort(np.concatenate(keys_of)).astype(np.int64)
    inst_user = np.sort(rng.integers(0, n_users, 3000))
    inst_user = np.concatenate([inst_user[::2], inst_user[1::2][::-1]])  # chunks need not be sorted by user
    keys = rng.integers(0, 1 << 63, len(inst_user)).astype(np.uint64)
    got = sampling.draw_negatives(keys, inst_user, user_item_keys, n_items, n_neg)
    want = sampling._draw_chunk(keys, inst_user, user_item_keys, n_items, n_neg)
    assert (got == want).all()
    srt = np.sort(got, axis=1)
    assert (srt[:, 1:] != srt[:, :-1]).all()  # distinct
    assert not np.isin(inst_user[:, None].astype(np.int64) * n_items + got, user_item_keys).any()  # not the user's


def test_take_strings_fixed_and_variable_width():
    codes = np.array([2, 0, 1, 1, 2], dtype=np.int32)
    for ids in (["ab", "cd", "ef"], ["a", "bcd", ""], ["é", "ü", "x"]):
        arr = pa.array(ids, type=pa.large_string())
        assert take_strings(arr, codes).to_pylist() == [ids[c] for c in codes]
        assert IdTable(arr).dictionary(codes).dictionary_decode().to_pylist() == [ids[c] for c in codes]


def test_dictionary_columns_digest_as_their_values():
    d = pa.array(["x", "yy", "zzz", "ab"], pa.large_string())
    cases = [
        pa.DictionaryArray.from_arrays(pa.array([0, 2, None, 1, 3, 3], pa.int32()), d),
        pa.DictionaryArray.from_arrays(pa.array([0, 1, 0], pa.int32()), pa.array(["a", None])),
        pa.DictionaryArray.from_arrays(pa.array([0, 2, 1, 1], pa.int32()), pa.array(["aa", "bb", "cc"], pa.large_string())),
    ]
    for col in cases:
        assert table_digest(pa.table({"c": col})) == table_digest(pa.table({"c": col.dictionary_decode()}))
    fixed = cases[2]
    lists = pa.LargeListArray.from_arrays(pa.array([0, 2, 2, 4], pa.int64()), fixed)
    plain = pa.LargeListArray.from_arrays(pa.array([0, 2, 2, 4], pa.int64()), fixed.dictionary_decode())
    assert table_digest(pa.table({"l": lists})) == table_digest(pa.table({"l": plain}))


def _built(**spec):
    inter, items, users = synthetic_frames(40, 60, 5, 3, 30, "random", True)
    return build_benchmark("s", inter, items, BuildSpec(seed=5, **spec), users=users)


def test_tables_in_small_slices_equal_the_whole_tables(monkeypatch):
    built = _built(history_len=4)
    whole = built.instances
    plan = built.plan
    sliced = pl.from_arrow(pa.Table.from_batches(list(plan.batches(rows=7)), schema=plan.schema))
    assert sliced.equals(whole) and "profile_age" in whole.columns
    inter = built.interactions
    assert pl.from_arrow(pa.Table.from_batches(list(built.inter.batches(rows=5)), schema=built.inter.schema)).equals(inter)
    # the digest computed from code slices equals the digest of the materialised tables
    assert coded_digest(plan) == table_digest(whole) and coded_digest(built.inter) == table_digest(inter)
    monkeypatch.setattr(instances_mod.InstancePlan, "pieces", lambda self, name, rows=3: (
        lambda: (self.column(name, lo, min(len(self), lo + rows), encoded=True) for lo in range(0, len(self), rows))))
    assert coded_digest(plan) == table_digest(whole)


def test_draws_in_tiny_chunks_build_the_same_instances(monkeypatch):
    before = _built().instances
    monkeypatch.setattr(sampling, "DRAW_CHUNK", 3)
    monkeypatch.setattr(instances_mod, "DRAW_CHUNK", 3)
    assert _built().instances.equals(before)


def test_encoded_input_builds_what_the_frame_builds():
    inter, items, users = synthetic_frames(40, 60, 5, 3, 30, "random", True)
    a = build_benchmark("s", inter, items, BuildSpec(seed=5), users=users)
    b = build_benchmark("s", encode_interactions(inter), items, BuildSpec(seed=5), users=users)
    assert a.instances.equals(b.instances) and a.interactions.equals(b.interactions) and a.stats == b.stats
