"""random / popularity / item-cooccurrence: determinism, what they learn from, and a planted signal."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from baselines.sanity import ItemCooccurrenceConfig, ItemCooccurrenceMethod, PopularityMethod, RandomMethod
from r2bench.data.benchmark import load_benchmark
from r2bench.eval.evaluate import evaluate_scores
from r2bench.eval.significance import wilcoxon_p
from r2bench.runs import long_scores


def test_random_is_seeded_per_instance_and_order_free(tiny_benchmark):
    test = tiny_benchmark.split("test")
    a = RandomMethod(seed=1).score(tiny_benchmark, test)
    assert a.shape == (test.height, 20) and ((a >= 0) & (a < 1)).all()
    assert np.array_equal(a, RandomMethod(seed=1).score(tiny_benchmark, test))
    assert not np.array_equal(a, RandomMethod(seed=2).score(tiny_benchmark, test))
    # a subset of instances gets the same scores (so --limit never changes them)
    assert np.array_equal(a[1:3], RandomMethod(seed=1).score(tiny_benchmark, test.slice(1, 2)))
    # reversing the candidates reverses the scores (keyed by item, not position)
    rev = test.with_columns(pl.col("candidates").list.reverse())
    assert np.array_equal(a[:, ::-1], RandomMethod(seed=1).score(tiny_benchmark, rev))
    assert len(np.unique(a)) == a.size  # no ties in practice


def test_popularity_counts_train_positives(tiny_benchmark):
    m = PopularityMethod()
    m.fit(tiny_benchmark)
    test = tiny_benchmark.split("test")
    s = m.score(tiny_benchmark, test)
    counts = tiny_benchmark.split("train")["target"].value_counts()
    lookup = dict(zip(counts["target"].to_list(), counts["count"].to_list()))
    want = np.array([[lookup.get(c, 0) for c in cands] for cands in test["candidates"].to_list()], dtype=float)
    assert np.array_equal(s, want)


def test_cooccurrence_ignores_non_train_users(tiny_benchmark):
    full = ItemCooccurrenceMethod(ItemCooccurrenceConfig(window=3))
    full.fit(tiny_benchmark)
    train_users = tiny_benchmark.split("train")["user_id"].unique()
    cut = load_benchmark(tiny_benchmark.path)
    cut.__dict__["interactions"] = cut.interactions.filter(pl.col("user_id").is_in(train_users.implode()))
    only_train = ItemCooccurrenceMethod(ItemCooccurrenceConfig(window=3))
    only_train.fit(cut)
    assert (full._co != only_train._co).nnz == 0
    test = tiny_benchmark.split("test")
    assert np.array_equal(full.score(tiny_benchmark, test), only_train.score(tiny_benchmark, test))


def test_cooccurrence_finds_a_planted_sequential_signal(tmp_path):
    from r2bench.data.synthetic import make_synthetic_benchmark

    bench = load_benchmark(make_synthetic_benchmark(tmp_path / "seq", n_users=200, n_items=60, seed=2,
                                                    pattern="sequential"))
    inst = bench.split("test")
    co = ItemCooccurrenceMethod(ItemCooccurrenceConfig(directed=True))
    co.fit(bench)
    m_co = evaluate_scores(long_scores(inst, co.score(bench, inst)), inst)
    m_rnd = evaluate_scores(long_scores(inst, RandomMethod(seed=0).score(bench, inst)), inst)
    assert m_co["ndcg@10"].mean() > 0.9
    assert wilcoxon_p(m_co["ndcg@10"].to_numpy(), m_rnd["ndcg@10"].to_numpy()) < 0.001


def test_cooccurrence_config_checked(tiny_benchmark):
    from r2bench.errors import R2BenchError

    with pytest.raises(R2BenchError, match="window"):
        ItemCooccurrenceMethod(ItemCooccurrenceConfig(window=0)).fit(tiny_benchmark)
