"""Pure functions: perturbation transforms and stratifications, on hand-built instance frames."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from r2bench.analyses import perturb as P
from r2bench.analyses import strata
from r2bench.errors import R2BenchError

K = 20


def make_instances(n: int = 12, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        hlen = [20, 20, 3, 7, 12, 20, 1, 16][i % 8]
        cands = [f"c{i}_{j}" for j in range(K)]
        t = int(rng.integers(0, K))
        rows.append({
            "instance_id": 100 + i, "split": "test", "user_id": f"u{i}",
            "history": [f"h{i}_{j}" for j in range(hlen)], "history_timestamps": list(range(1000, 1000 + hlen)),
            "target": cands[t], "target_timestamp": 5000, "candidates": cands, "target_index": t,
            "target_train_freq": [0, 0, 0, 1, 3, 5, 6, 9, 0, 2, 40, 7][i % 12],
        })
    return pl.DataFrame(rows).with_columns(pl.col("target_index").cast(pl.Int8))


def consistent(df: pl.DataFrame) -> bool:
    return all(c[t] == tgt for c, t, tgt in zip(df["candidates"], df["target_index"], df["target"]))


@pytest.mark.parametrize("pos", [1, 2, 10, 19, 20])
def test_move_target_keeps_others_in_order(pos):
    inst = make_instances()
    out = P.move_target(inst, pos)
    assert consistent(out)
    assert (out["target_index"] == pos - 1).all()
    assert out["target_index"].dtype == pl.Int8
    for before, after, tgt in zip(inst["candidates"], out["candidates"], inst["target"]):
        assert after[pos - 1] == tgt
        assert [c for c in after if c != tgt] == [c for c in before if c != tgt]
    # the input frame is not modified
    assert inst["candidates"].to_list() == make_instances()["candidates"].to_list()


def test_move_target_rejects_bad_position():
    with pytest.raises(R2BenchError, match="between 1 and 20"):
        P.move_target(make_instances(), 21)


def test_candidate_shuffle_is_a_seeded_per_instance_permutation():
    inst = make_instances()
    a = P.shuffle_candidates(inst, seed=3)
    assert consistent(a)
    assert all(sorted(x) == sorted(y) for x, y in zip(a["candidates"], inst["candidates"]))
    assert a["candidates"].to_list() != inst["candidates"].to_list()
    # same permutation for an instance whatever subset it is in, different with another seed
    sub = P.shuffle_candidates(inst.tail(4), seed=3)
    assert sub["candidates"].to_list() == a.tail(4)["candidates"].to_list()
    assert P.shuffle_candidates(inst, seed=4)["candidates"].to_list() != a["candidates"].to_list()


def test_history_shuffle_permutes_items_with_their_timestamps():
    inst = make_instances()
    out = P.shuffle_history(inst, seed=1)
    assert out["history"].to_list() != inst["history"].to_list()
    for h0, t0, h1, t1 in zip(inst["history"], inst["history_timestamps"], out["history"], out["history_timestamps"]):
        assert sorted(h1) == sorted(h0)
        assert dict(zip(h1, t1)) == dict(zip(h0, t0))
    assert out["candidates"].to_list() == inst["candidates"].to_list()


def test_truncate_and_fixed_sample():
    inst = make_instances(40)
    out = P.truncate_history(inst, 5)
    assert out["history"].list.len().max() == 5
    assert out["history"].to_list()[0] == inst["history"].to_list()[0][-5:]
    assert out["history_timestamps"].to_list()[0] == inst["history_timestamps"].to_list()[0][-5:]
    s1 = P.full_history_sample(inst, 6, full_length=20, seed=0)
    assert s1.height == 6 and (s1["history"].list.len() == 20).all()
    # the sample does not depend on k: specs with different k select the same instances
    a = P.apply_perturbation(inst, P.history_truncate_spec(1, n=6, full_length=20, seed=0))
    b = P.apply_perturbation(inst, P.history_truncate_spec(15, n=6, full_length=20, seed=0))
    assert a["instance_id"].to_list() == b["instance_id"].to_list() == s1["instance_id"].to_list()
    assert (a["history"].list.len() == 1).all() and (b["history"].list.len() == 15).all()
    with pytest.raises(R2BenchError, match="full length"):
        P.full_history_sample(inst, 5, full_length=25)


def test_specs_round_trip_and_unknown_kind():
    inst = make_instances()
    for spec in (P.target_position_spec(10), P.history_shuffle_spec(2), P.candidate_shuffle_spec(0)):
        out = P.perturbation_fn(spec)(inst)
        assert out.height == inst.height and consistent(out)
        assert P.describe(spec) != "original"
    assert P.apply_perturbation(inst, None) is inst
    with pytest.raises(R2BenchError, match="unknown perturbation kind"):
        P.apply_perturbation(inst, {"kind": "nope"})


def test_cold_start_bins_equal_size_and_cover_everything():
    inst = make_instances(43)
    bins = strata.cold_start_bins(inst, 4)
    assert bins["instance_id"].to_list() == inst["instance_id"].to_list()
    sizes = bins.group_by("group_order").len()["len"].to_list()
    assert sum(sizes) == 43 and max(sizes) - min(sizes) <= 1 and len(sizes) == 4
    # bins are ordered by frequency: every instance of bin b has freq <= every one of bin b+1
    j = bins.join(inst.select("instance_id", "target_train_freq"), on="instance_id")
    agg = j.group_by("group_order").agg(pl.col("target_train_freq").min().alias("lo"),
                                        pl.col("target_train_freq").max().alias("hi")).sort("group_order")
    assert all(h <= lo for h, lo in zip(agg["hi"].to_list()[:-1], agg["lo"].to_list()[1:]))
    assert bins["group"].str.starts_with("Q").all()


def test_fixed_groups_and_history_length_groups():
    inst = make_instances(24)
    fixed = strata.fixed_frequency_groups(inst)
    labels = dict(zip(fixed["instance_id"], fixed["group"]))
    freq = dict(zip(inst["instance_id"], inst["target_train_freq"]))
    for iid, f in freq.items():
        expect = "never seen (0)" if f == 0 else ("1-5" if f <= 5 else ">5")
        assert labels[iid] == expect
    hl = strata.history_length_groups(inst)
    lens = dict(zip(inst["instance_id"], inst["history"].list.len()))
    lab = dict(zip(hl["instance_id"], hl["group"]))
    for iid, n in lens.items():
        expect = "1-5" if n <= 5 else "6-10" if n <= 10 else "11-15" if n <= 15 else "16-20"
        assert lab[iid] == expect
    sizes = strata.group_sizes(hl)
    assert sizes["n"].sum() == inst.height and abs(sizes["share"].sum() - 1.0) < 1e-9


def test_scored_instances_names_the_truncation_sample():
    inst = make_instances(40)
    spec = P.history_truncate_spec(5, n=4, full_length=20, seed=0)
    assert P.scored_instances(inst, None) is inst
    assert P.scored_instances(inst, P.target_position_spec(3)) is inst
    spec = dict(spec, sample=dict(spec["sample"], pool_limit=10))
    chosen = P.scored_instances(inst, spec)
    first10 = set(inst.sort("instance_id").head(10)["instance_id"].to_list())
    assert set(chosen["instance_id"].to_list()) <= first10
    assert (chosen["history"].list.len() == 20).all()
