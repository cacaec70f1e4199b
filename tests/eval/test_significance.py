"""Wilcoxon markers, bootstrap CIs, Holm, and refusal to compare incomparable runs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest

from r2bench.errors import R2BenchError
from r2bench.eval.significance import (
    bootstrap_ci,
    holm,
    marker,
    paired_bootstrap_ci,
    wilcoxon_p,
)
from r2bench.pipeline import run_method
from r2bench.report.compare import CompareOptions, aligned_metrics, compare_runs
from r2bench.runs import load_run


def test_markers():
    assert marker(0.2) == "" and marker(0.04) == "†" and marker(0.009) == "‡" and marker(0.0009) == "§"
    assert marker(float("nan")) == "" and marker(None) == ""


def test_identical_runs_p_is_one():
    a = np.random.default_rng(0).random(100)
    assert wilcoxon_p(a, a.copy()) == 1.0
    assert marker(wilcoxon_p(a, a)) == ""


def test_clearly_better_run_gets_marker():
    rng = np.random.default_rng(0)
    b = rng.random(300)
    a = b + 0.1 + 0.01 * rng.random(300)
    p = wilcoxon_p(a, b)
    assert p < 0.001 and marker(p) == "§"
    lo, hi = paired_bootstrap_ci(a, b, seed=1)
    assert 0.1 < lo < hi < 0.111


def test_bootstrap_ci_covers_mean_and_is_seeded():
    v = np.random.default_rng(2).random(500)
    lo, hi = bootstrap_ci(v, n_boot=500, seed=4)
    assert lo < v.mean() < hi
    assert (lo, hi) == bootstrap_ci(v, n_boot=500, seed=4)
    assert bootstrap_ci(np.full(10, 0.3)) == pytest.approx((0.3, 0.3))


def test_holm():
    adj = holm([0.01, 0.04, 0.03, float("nan")])
    # sorted: 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    assert adj[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(adj[3])
    assert holm([0.5, 0.9]).max() <= 1.0


@pytest.fixture(scope="module")
def three_runs(tiny_benchmark_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("sig_runs")
    return [load_run(run_method(m, tiny_benchmark_path, out=out, split="val"))
            for m in ("random", "popularity", "item-cooccurrence")]


def test_compare_runs_best_vs_runner_up(three_runs):
    df = compare_runs(three_runs, CompareOptions(n_boot=200))
    assert df.height == 9
    for metric in ("ndcg@1", "ndcg@5", "ndcg@10"):
        sub = df.filter(pl.col("metric") == metric)
        best = sub.filter(pl.col("is_best"))
        assert best.height == 1
        assert best["mean"][0] == sub["mean"].max()
        assert best["compared_to"][0] is not None
        assert sub.filter(~pl.col("is_best"))["p_value"].is_nan().all()
    assert (df["ci_low"] <= df["mean"]).all() and (df["mean"] <= df["ci_high"]).all()


def test_compare_with_reference_and_holm(three_runs):
    df = compare_runs(three_runs, CompareOptions(reference="random", holm=True, n_boot=100))
    others = df.filter(pl.col("label") != "random")
    assert (others["compared_to"] == "random").all()
    assert (others["p_adjusted"] >= others["p_value"] - 1e-12).all()
    with pytest.raises(R2BenchError, match="reference 'nope'"):
        compare_runs(three_runs, CompareOptions(reference="nope"))


def test_different_fingerprints_are_separate_comparisons(three_runs, tmp_path):
    dst = tmp_path / "forged"
    shutil.copytree(three_runs[0].path, dst)
    meta = json.loads((dst / "run.json").read_text())
    meta["benchmark_fingerprint"] = "f" * 64
    (dst / "run.json").write_text(json.dumps(meta))
    forged = load_run(dst)
    with pytest.raises(R2BenchError, match="different benchmark fingerprints"):
        aligned_metrics([three_runs[1], forged])
    df = compare_runs([three_runs[1], forged], CompareOptions(n_boot=50))
    assert df["comparison"].n_unique() == 2
    assert df["compared_to"].is_null().all()  # a comparison of one run has no test
    assert any("[ffffffff]" in c for c in df["comparison"].unique().to_list())


def test_different_instance_sets_are_separate_comparisons(three_runs, tiny_benchmark_path, tmp_path):
    limited = load_run(run_method("random", tiny_benchmark_path, out=tmp_path, split="val", limit=2))
    with pytest.raises(R2BenchError, match="different instance sets"):
        aligned_metrics([three_runs[1], limited])
    df = compare_runs([three_runs[1], limited, three_runs[0]], CompareOptions(n_boot=50))
    by = {c: set(part["label"].to_list()) for (c,), part in df.group_by("comparison")}
    full = next(c for c in by if "all" in c)
    part = next(c for c in by if "first 2 instances (--limit 2)" in c)
    assert by[full] == {"popularity", "random"} and by[part] == {"random"}
    assert (df.filter(pl.col("comparison") == part)["n"] == 2).all()
