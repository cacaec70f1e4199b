"""Cross-dataset matrix, and the `r2bench analyze` / `r2bench study` commands end to end."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from r2bench.analyses.suite import Options, analyze_runs, load_runs
from r2bench.analyses.transfer import make_transfer_runs
from r2bench.cli import main
from r2bench.methods import BaseMethod


class Pinned(BaseMethod):
    """An ID-bound method that refuses transfer."""

    name = "pinned"
    transferable = False

    def score(self, benchmark, instances):
        return np.zeros((instances.height, 20))


def _bench(root, dataset: str, prefix: str, seed: int):
    """A synthetic benchmark whose item ids start with ``prefix`` (disjoint across prefixes)."""
    from r2bench.data.build import BuildSpec, build_benchmark
    from r2bench.data.store import write_benchmark
    from r2bench.data.synthetic import synthetic_frames

    inter, items, users = synthetic_frames(n_users=200, n_items=60, seed=seed)
    ren = pl.col("item_id").str.replace("^i", prefix)
    built = build_benchmark(dataset, inter.with_columns(ren), items.with_columns(ren), BuildSpec(seed=seed),
                            users=users, source={"name": "test", "params": {}}, where="test")
    return write_benchmark(built, root / dataset)


@pytest.fixture(scope="module")
def two_benches(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    return _bench(root, "alpha", "a", 1), _bench(root, "beta", "b", 2)


def test_transfer_matrix_flags_disjoint_items_and_non_transferable(two_benches, tmp_path):
    from r2bench.data.benchmark import load_benchmark
    from r2bench.pipeline import item_overlap, transfer_problem

    a, b = (load_benchmark(p) for p in two_benches)
    assert item_overlap(a, b) == 0.0 and item_overlap(a, a) == 1.0
    assert "cannot transfer" in transfer_problem(Pinned(), a, b)
    assert transfer_problem(Pinned(), a, a) is None
    paths, skipped = make_transfer_runs(["popularity", Pinned()], [a, b], Options(), tmp_path / "runs")
    # popularity is ID-based: with no shared item it would tie every candidate, so only its
    # diagonal runs; pinned is not transferable at all
    assert len(paths) == 2 + 2
    assert {(s["method"], s["train"], s["test"]) for s in skipped} == {
        ("pinned", "alpha", "beta"), ("pinned", "beta", "alpha"),
        ("popularity", "alpha", "beta"), ("popularity", "beta", "alpha"),
    }
    res = analyze_runs("transfer", load_runs(paths), tmp_path, skipped=skipped)
    pop = res.tables["matrix_popularity"]
    assert pop.columns == ["train \\ test", "alpha", "beta"]
    assert pop.filter(pl.col("train \\ test") == "alpha")["beta"][0] is None
    assert pop.filter(pl.col("train \\ test") == "alpha")["alpha"][0] is not None  # the diagonal ran
    assert any("popularity" in n and "ID-based" in n for n in res.notes)
    pinned = res.tables["matrix_pinned"]
    assert pinned.filter(pl.col("train \\ test") == "alpha")["beta"][0] is None
    assert any("not run" in n and "cannot transfer" in n for n in res.notes)
    assert res.figure.is_file()


def test_cli_analyze_makes_runs_then_reanalyses_them(tiny_benchmark_path, tmp_path, capsys):
    out = tmp_path / "pos"
    rc = main(["analyze", "position", "--method", "popularity,random", "--dataset", str(tiny_benchmark_path),
               "--positions", "1,20", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Candidate position bias" in text and "ok (pointwise, invariant)" in text
    assert (out / "position.png").is_file() and (out / "position_summary.csv").is_file()
    runs = sorted((out / "runs").iterdir())
    assert len(runs) == 4
    meta = json.loads((runs[0] / "run.json").read_text())
    assert meta["perturbation"]["kind"] == "target_position"
    # the same analysis from the run folders alone
    rc = main(["analyze", "position", "--runs", str(out / "runs"), "--out", str(tmp_path / "again")])
    assert rc == 0
    a = pl.read_csv(out / "position_summary.csv")
    b = pl.read_csv(tmp_path / "again" / "position_summary.csv")
    assert a.equals(b)


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["analyze", "cold-start"]) == 2
    assert "give --runs" in capsys.readouterr().err
    assert main(["analyze", "cold-start", "--runs", str(tmp_path / "nope")]) == 2
    assert "run not found" in capsys.readouterr().err


def test_cli_study_writes_full_report(tiny_benchmark_path, tmp_path):
    out = tmp_path / "study"
    rc = main(["study", "--dataset", str(tiny_benchmark_path), "--methods", "random,popularity",
               "--shuffles", "2", "--ks", "1,20", "--sample", "3", "--out", str(out)])
    assert rc == 0
    md = (out / "report.md").read_text()
    for title in ("Item cold-start", "History length", "Candidate position bias", "History order shuffling",
                  "History truncation", "Candidate shuffling"):
        assert f"## {title}" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 6
    study = json.loads((out / "study.json").read_text())
    assert study["methods"] == ["random", "popularity"] and study["timings_s"]["total"] > 0
    # 2 methods x (original + 3 positions + 2 shuffles + 2 truncations + 1 candidate shuffle)
    assert len(study["runs"]) == 2 * 9
