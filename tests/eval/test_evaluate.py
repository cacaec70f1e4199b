"""The evaluator: validation of malformed runs and metrics computed by item id."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest

from r2bench.errors import RunValidationError
from r2bench.eval.evaluate import evaluate_run, evaluate_scores
from r2bench.eval.metrics import random_expectation
from r2bench.pipeline import run_method
from r2bench.runs import load_run


@pytest.fixture(scope="module")
def base_run(tiny_benchmark_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return run_method("popularity", tiny_benchmark_path, out=out)


@pytest.fixture
def run_copy(base_run, tmp_path):
    dst = tmp_path / base_run.name
    shutil.copytree(base_run, dst)
    (dst / "metrics.parquet").unlink()
    return dst


def _edit(run_dir, fn):
    scores = pl.read_parquet(run_dir / "scores.parquet")
    fn(scores).write_parquet(run_dir / "scores.parquet")


def test_valid_run_writes_metrics(run_copy, tiny_benchmark):
    m = evaluate_run(run_copy)
    assert (run_copy / "metrics.parquet").is_file()
    test = tiny_benchmark.split("test")
    assert m["instance_id"].to_list() == test["instance_id"].to_list()
    assert set(m.columns) >= {"ndcg@1", "ndcg@5", "ndcg@10", "hr@10", "mrr", "target_rank"}
    assert ((m["ndcg@10"] >= 0) & (m["ndcg@10"] <= 1)).all()


def test_missing_instance(run_copy, tiny_benchmark):
    first = tiny_benchmark.split("test")["instance_id"][0]
    _edit(run_copy, lambda s: s.filter(pl.col("instance_id") != first))
    with pytest.raises(RunValidationError, match=rf"have no scores: {first}"):
        evaluate_run(run_copy)


def test_19_candidates(run_copy, tiny_benchmark):
    first = tiny_benchmark.split("test")["instance_id"][0]
    _edit(run_copy, lambda s: s.filter(~((pl.col("instance_id") == first) & (pl.int_range(pl.len()) == 0))))
    with pytest.raises(RunValidationError, match=rf"instance {first} has 19 rows"):
        evaluate_run(run_copy)


def test_21_candidates(run_copy, tiny_benchmark):
    inst = tiny_benchmark.split("test").row(1, named=True)
    outsider = next(i for i in tiny_benchmark.items["item_id"] if i not in inst["candidates"])
    extra = pl.DataFrame({"instance_id": [inst["instance_id"]], "item_id": [outsider], "score": [1.0]})
    _edit(run_copy, lambda s: pl.concat([s, extra.cast(s.schema)]))
    with pytest.raises(RunValidationError, match=rf"instance {inst['instance_id']} has 21 rows"):
        evaluate_run(run_copy)


def test_wrong_item(run_copy, tiny_benchmark):
    inst = tiny_benchmark.split("test").row(0, named=True)
    outsider = next(i for i in tiny_benchmark.items["item_id"] if i not in inst["candidates"])
    victim = inst["candidates"][3]
    _edit(run_copy, lambda s: s.with_columns(
        pl.when((pl.col("instance_id") == inst["instance_id"]) & (pl.col("item_id") == victim))
        .then(pl.lit(outsider)).otherwise(pl.col("item_id")).alias("item_id")))
    with pytest.raises(RunValidationError, match=rf"item '{outsider}' in instance {inst['instance_id']}"):
        evaluate_run(run_copy)


def test_nan_score(run_copy, tiny_benchmark):
    iid = tiny_benchmark.split("test")["instance_id"][2]
    _edit(run_copy, lambda s: s.with_columns(
        pl.when((pl.col("instance_id") == iid) & (pl.int_range(pl.len()) % 20 == 5))
        .then(float("nan")).otherwise(pl.col("score")).alias("score")))
    with pytest.raises(RunValidationError, match=rf"non-finite.*instance\(s\) {iid}"):
        evaluate_run(run_copy)


def test_duplicate_row(run_copy, tiny_benchmark):
    iid = tiny_benchmark.split("test")["instance_id"][1]
    _edit(run_copy, lambda s: pl.concat([s, s.filter(pl.col("instance_id") == iid).head(1)]))
    with pytest.raises(RunValidationError, match=rf"duplicate rows.*instance {iid}"):
        evaluate_run(run_copy)


def test_unknown_instance(run_copy):
    _edit(run_copy, lambda s: pl.concat([s, s.tail(20).with_columns(pl.lit(10**9, pl.Int64).alias("instance_id"))]))
    with pytest.raises(RunValidationError, match="not in the benchmark split: 1000000000"):
        evaluate_run(run_copy)


def test_wrong_fingerprint(run_copy):
    meta = json.loads((run_copy / "run.json").read_text())
    meta["benchmark_fingerprint"] = "0" * 64
    (run_copy / "run.json").write_text(json.dumps(meta))
    bench = load_run(run_copy)
    from r2bench.data.benchmark import load_benchmark

    with pytest.raises(RunValidationError, match="fingerprint 000000000000"):
        evaluate_run(run_copy, benchmark=load_benchmark(meta["benchmark_path"]))
    with pytest.raises(Exception, match="cannot find its benchmark"):
        bench.benchmark()


def test_candidate_order_does_not_matter(base_run, tiny_benchmark):
    test = tiny_benchmark.split("test")
    scores = pl.read_parquet(base_run / "scores.parquet")
    a = evaluate_scores(scores, test)
    b = evaluate_scores(scores.sample(fraction=1.0, shuffle=True, seed=3), test)
    assert a.equals(b)


def test_metrics_use_the_benchmark_target(tiny_benchmark):
    test = tiny_benchmark.split("test")
    # score 1 for the target and 0 elsewhere -> perfect; constant -> exact random expectation
    rows = test.select("instance_id", "candidates", "target").explode("candidates")
    perfect = rows.select("instance_id", pl.col("candidates").alias("item_id"),
                          (pl.col("candidates") == pl.col("target")).cast(pl.Float64).alias("score"))
    m = evaluate_scores(perfect, test)
    assert (m["ndcg@1"] == 1).all() and (m["target_rank"] == 1).all()
    const = perfect.with_columns(pl.lit(0.0).alias("score"))
    m0 = evaluate_scores(const, test)
    assert np.allclose(m0["ndcg@10"].to_numpy(), random_expectation("ndcg@10"))
    assert round(random_expectation("ndcg@10"), 4) == 0.2272
