"""run_method / load_run: the run artifact, provenance, limit, perturbation, transfer."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from r2bench.errors import R2BenchError
from r2bench.methods import BaseMethod
from r2bench.pipeline import run_method
from r2bench.runs import load_run


def test_run_artifact_and_provenance(tiny_benchmark, tmp_path):
    path = run_method("item-cooccurrence", tiny_benchmark.path, out=tmp_path, seed=3,
                      overrides={"window": "2"})
    assert path.parent == tmp_path
    assert {"scores.parquet", "run.json", "metrics.parquet"} <= {p.name for p in path.iterdir()}
    meta = json.loads((path / "run.json").read_text())
    assert meta["schema"] == "r2bench.run/1"
    assert meta["method"] == "item-cooccurrence" and meta["seed"] == 3
    assert meta["config"]["window"] == 2
    assert meta["benchmark_fingerprint"] == tiny_benchmark.fingerprint
    assert meta["dataset"] == tiny_benchmark.name and meta["split"] == "test"
    assert meta["limit"] is None and meta["perturbation"] is None and meta["train_on"] is None
    assert set(meta["timings"]) == {"fit_s", "score_s", "total_s"}
    assert "numpy" in meta["versions"] and "cpu_count" in meta["hardware"]
    assert meta["info"]["cooccurring_pairs"] > 0
    assert meta["run_id"] == path.name and path.name.startswith(f"{tiny_benchmark.name}-item-cooccurrence-test-")
    scores = pl.read_parquet(path / "scores.parquet")
    assert scores.schema == {"instance_id": pl.Int64, "item_id": pl.String, "score": pl.Float64}
    assert scores.height == tiny_benchmark.split("test").height * 20
    run = load_run(path)
    assert run.metrics.height == tiny_benchmark.split("test").height


def test_run_ids_are_unique(tiny_benchmark, tmp_path):
    a = run_method("random", tiny_benchmark.path, out=tmp_path, evaluate=False)
    b = run_method("random", tiny_benchmark.path, out=tmp_path, evaluate=False)
    assert a != b
    assert not (a / "metrics.parquet").exists()


def test_load_run_by_id_under_runs_dir(tiny_benchmark, tmp_path):
    path = run_method("random", tiny_benchmark.path)  # default: $R2BENCH_RUNS (set by conftest)
    assert load_run(path.name).path.resolve() == path.resolve()
    with pytest.raises(R2BenchError, match="no such run: no-such-run is neither a folder nor a run id under"):
        load_run("no-such-run")
    (tmp_path / "not-a-run").mkdir()
    with pytest.raises(R2BenchError, match="not a run folder"):
        load_run(tmp_path / "not-a-run")


def test_limit_and_random_is_stable_under_limit(tiny_benchmark, tmp_path):
    full = load_run(run_method("random", tiny_benchmark.path, split="val", out=tmp_path, seed=5)).scores
    part_run = load_run(run_method("random", tiny_benchmark.path, split="val", out=tmp_path, seed=5, limit=2))
    ids = tiny_benchmark.split("val")["instance_id"].head(2).to_list()
    assert part_run.meta["limit"] == 2 and part_run.meta["n_instances"] == 2
    assert sorted(part_run.scores["instance_id"].unique().to_list()) == ids
    assert part_run.metrics.height == 2
    joined = part_run.scores.join(full, on=["instance_id", "item_id"])
    assert joined.height == 40 and (joined["score"] == joined["score_right"]).all()
    other_seed = load_run(run_method("random", tiny_benchmark.path, split="val", out=tmp_path, seed=6, limit=2))
    assert not other_seed.scores["score"].equals(part_run.scores["score"])


def test_perturbation_is_recorded_and_order_free(tiny_benchmark, tmp_path):
    def reverse_candidates(inst: pl.DataFrame) -> pl.DataFrame:
        return inst.with_columns(pl.col("candidates").list.reverse(),
                                 (19 - pl.col("target_index")).alias("target_index"))

    base = load_run(run_method("popularity", tiny_benchmark.path, out=tmp_path))
    pert = load_run(run_method("popularity", tiny_benchmark.path, out=tmp_path, perturb=reverse_candidates,
                               perturbation={"name": "reverse-candidates"}))
    assert pert.meta["perturbation"] == {"name": "reverse-candidates"}
    assert "reverse-candidates" in pert.label
    # popularity is pointwise: same metrics whatever the candidate order
    assert base.metrics["ndcg@10"].equals(pert.metrics["ndcg@10"])


def test_perturbation_must_keep_instances(tiny_benchmark, tmp_path):
    with pytest.raises(R2BenchError, match="same instances"):
        run_method("random", tiny_benchmark.path, out=tmp_path, perturb=lambda df: df.head(1))


def test_train_on_records_source(tiny_benchmark_path, tmp_path):
    from r2bench.data.synthetic import make_synthetic_benchmark

    other = make_synthetic_benchmark(tmp_path / "other", n_users=40, n_items=60, seed=1)
    run = load_run(run_method("popularity", tiny_benchmark_path, out=tmp_path, train_on=other))
    assert run.meta["train_on"]["fingerprint"] != run.fingerprint
    assert "trained on" in run.label


class _BadShape(BaseMethod):
    name = "bad"

    def score(self, benchmark, instances):
        return np.zeros((instances.height, 19))


class _NaN(BaseMethod):
    name = "nan"

    def score(self, benchmark, instances):
        out = np.zeros((instances.height, 20))
        out[0, 0] = np.nan
        return out


def test_method_output_checked(tiny_benchmark, tmp_path):
    with pytest.raises(R2BenchError, match=r"shape \(\d+, 19\)"):
        run_method(_BadShape(), tiny_benchmark.path, out=tmp_path)
    with pytest.raises(R2BenchError, match="non-finite"):
        run_method(_NaN(), tiny_benchmark.path, out=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_unknown_method_and_config_key(tiny_benchmark, tmp_path):
    with pytest.raises(R2BenchError, match="did you mean 'popularity'"):
        run_method("populrity", tiny_benchmark.path, out=tmp_path)
    with pytest.raises(R2BenchError, match="did you mean 'window'"):
        run_method("item-cooccurrence", tiny_benchmark.path, out=tmp_path, overrides={"windw": 3})
    with pytest.raises(R2BenchError, match="limit"):
        run_method("random", tiny_benchmark.path, out=tmp_path, limit=0)


def test_labels_say_what_differs(tiny_benchmark, tmp_path):
    from r2bench.runs import run_labels

    d = tiny_benchmark.path
    base = load_run(run_method("item-cooccurrence", d, out=tmp_path))
    w3 = load_run(run_method("item-cooccurrence", d, out=tmp_path, overrides={"window": 3, "directed": True}))
    s1 = load_run(run_method("item-cooccurrence", d, out=tmp_path, seed=1))
    named = load_run(run_method("random", d, out=tmp_path, label="my baseline"))
    assert w3.meta["config_changes"] == {"window": 3, "directed": True} and base.meta["config_changes"] == {}
    assert run_labels([base, w3, named]) == ["item-cooccurrence", "item-cooccurrence directed=true window=3",
                                             "my baseline"]
    # the seed only where runs of one label differ in it
    assert run_labels([base, s1, w3]) == ["item-cooccurrence seed=0", "item-cooccurrence seed=1",
                                          "item-cooccurrence directed=true window=3"]
    # same label, same seed, other scores: told apart by creation time, then run id
    again = load_run(run_method("item-cooccurrence", d, out=tmp_path))
    a, b = run_labels([base, again])
    assert a != b and a.startswith("item-cooccurrence (") and b.startswith("item-cooccurrence (")
    # a run made before run.json recorded config_changes: the keys that differ among its peers
    for r in (base, w3):
        del r.meta["config_changes"]
    assert run_labels([base, w3]) == ["item-cooccurrence directed=false window=5",
                                      "item-cooccurrence directed=true window=3"]
