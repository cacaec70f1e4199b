"""Analyses on a tiny benchmark, with outcomes known by construction.

- ``FirstListed`` always prefers the first listed candidate: a maximal position effect,
  not permutation invariant;
- popularity is pointwise: no position effect, identical scores under any candidate
  or history order;
- ``LastItem`` only looks at the most recent history item: truncation to k = 1 changes nothing.
"""

from __future__ import annotations

import zlib

import numpy as np
import polars as pl
import pytest

from r2bench.analyses import perturb as P
from r2bench.analyses.execute import MethodRunner
from r2bench.analyses.suite import Options, analyze_runs, load_runs
from r2bench.methods import BaseMethod


class FirstListed(BaseMethod):
    name = "first-listed"
    pointwise = False

    def score(self, benchmark, instances):
        k = int(instances["candidates"].list.len().max())
        return np.tile(np.arange(k, 0, -1, dtype=float), (instances.height, 1))


class LastItem(BaseMethod):
    """Score = a hash of (last history item, candidate): depends on nothing else."""

    name = "last-item"

    def score(self, benchmark, instances):
        out = []
        for hist, cands in zip(instances["history"].to_list(), instances["candidates"].to_list()):
            last = hist[-1] if hist else ""
            out.append([zlib.crc32(f"{last}|{c}".encode()) / 2**32 for c in cands])
        return np.array(out)


class FakePointwise(FirstListed):
    """Claims to be pointwise but is not: the check must catch it."""

    name = "liar"
    pointwise = True


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    from r2bench.data.benchmark import load_benchmark
    from r2bench.data.synthetic import make_synthetic_benchmark

    path = make_synthetic_benchmark(tmp_path_factory.mktemp("an_bench"), n_users=400, n_items=80, seed=1)
    return load_benchmark(path)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("an_runs")


def _runner(method, bench, out):
    return MethodRunner(method, bench, out=out)


def test_position_bias_first_listed_vs_popularity(bench, runs_dir, tmp_path):
    paths = []
    for m in (FirstListed(), "popularity", FakePointwise()):
        r = _runner(m, bench, runs_dir / "pos")
        paths += [r.perturbed(P.target_position_spec(p)) for p in (1, 10, 20)]
    res = analyze_runs("position", load_runs(paths), tmp_path)
    summ = {row["method"]: row for row in res.tables["summary"].iter_rows(named=True)}
    fl, pop, liar = summ["first-listed"], summ["popularity"], summ["liar"]
    # target listed first -> rank 1, listed 20th -> rank 20: spread of 19 ranks
    assert fl["sensitivity_ranks"] == pytest.approx(19.0)
    assert fl["permutation_invariant"] is False and fl["friedman_p"] < 1e-3
    assert pop["sensitivity_ranks"] == pytest.approx(0.0)
    assert pop["permutation_invariant"] is True and pop["declared_pointwise"] is True
    assert pop["check"].startswith("ok")
    assert liar["check"].startswith("FAIL") and any("VIOLATION: liar" in n for n in res.notes)
    ranks = res.tables["ranks"].filter(pl.col("method") == "first-listed").sort("position")
    assert ranks["mean_rank"].to_list() == pytest.approx([1.0, 10.0, 20.0])
    assert res.figure is not None and res.figure.stat().st_size > 1000


def test_candidate_shuffle_invariance(bench, runs_dir, tmp_path):
    paths = []
    for m in ("popularity", FirstListed()):
        r = _runner(m, bench, runs_dir / "cs")
        paths += [r.original(), r.perturbed(P.candidate_shuffle_spec(0)), r.perturbed(P.candidate_shuffle_spec(1))]
    res = analyze_runs("candidate-shuffle", load_runs(paths), tmp_path)
    t = res.tables["invariance"]
    pop = t.filter(pl.col("method") == "popularity")
    fl = t.filter(pl.col("method") == "first-listed")
    assert pop["permutation_invariant"].all() and (pop["max_abs_score_diff"] == 0).all()
    assert (pop["delta"] == 0).all()
    assert not fl["permutation_invariant"].any() and (fl["share_instances_changed"] > 0.5).all()
    assert res.figure.is_file()


def test_history_shuffle_leaves_popularity_unchanged(bench, runs_dir, tmp_path):
    paths = []
    for m in ("popularity", LastItem()):
        r = _runner(m, bench, runs_dir / "hs")
        paths.append(r.original())
        paths += [r.perturbed(P.history_shuffle_spec(s)) for s in range(4)]
    res = analyze_runs("history-shuffle", load_runs(paths), tmp_path)
    rows = {row["method"]: row for row in res.tables["shuffle"].iter_rows(named=True)}
    pop = rows["popularity"]
    assert pop["std"] == 0.0 and pop["range"] == 0.0 and pop["scores_unchanged"] is True
    assert pop["avg"] == pytest.approx(pop["original_avg"])
    # a method that reads the last item does move when the history is shuffled
    assert rows["last-item"]["scores_unchanged"] is False and rows["last-item"]["permutations"] == 4
    assert res.figure.is_file()


def test_truncation_last_item_method_unchanged_at_k1(bench, runs_dir, tmp_path):
    paths = []
    for m in (LastItem(), "item-cooccurrence"):
        r = _runner(m, bench, runs_dir / "tr")
        paths += [r.perturbed(P.history_truncate_spec(k, n=5, full_length=20, seed=0)) for k in (1, 5, 20)]
    runs = load_runs(paths)
    assert {r.metrics.height for r in runs} == {5}  # the fixed sample only
    ids = {tuple(sorted(r.metrics["instance_id"].to_list())) for r in runs}
    assert len(ids) == 1  # the same instances for every k and method
    res = analyze_runs("truncation", runs, tmp_path)
    t = res.tables["truncation"]
    li = t.filter(pl.col("method") == "last-item").sort("k")
    assert li["scores_same_as_k20"].all()
    assert li["delta_vs_k20"].to_list() == pytest.approx([0.0, 0.0, 0.0])
    co = t.filter((pl.col("method") == "item-cooccurrence") & (pl.col("k") == 1))
    assert co["scores_same_as_k20"].to_list() == [False]  # co-occurrence uses the whole history
    assert res.figure.is_file()


def test_stratified_from_runs(bench, runs_dir, tmp_path):
    paths = [_runner(m, bench, runs_dir / "st").original() for m in ("random", "popularity", "item-cooccurrence")]
    runs = load_runs(paths)
    res = analyze_runs("cold-start", runs, tmp_path, Options(reference="popularity"))
    bins = res.tables["bins_long"]
    n_test = bench.split("test").height
    per_method = bins.group_by("method").agg(pl.col("n").sum())
    assert (per_method["n"] == n_test).all()  # the bins cover every instance, for every method
    sizes = bins.filter(pl.col("method") == "random")["n"].to_list()
    assert len(sizes) == 4 and max(sizes) - min(sizes) <= 1
    assert (bins["ci_low"] <= bins["mean"]).all() and (bins["mean"] <= bins["ci_high"]).all()
    imp = res.tables["improvement"]
    assert set(imp["other"].to_list()) == {"random", "item-cooccurrence"}
    assert res.figure.is_file()
    res.write(tmp_path / "out")
    for ext in ("csv", "md", "tex"):
        assert (tmp_path / "out" / f"cold-start_bins.{ext}").is_file()
    hl = analyze_runs("history-length", runs, tmp_path)
    assert hl.tables["groups_long"].group_by("method").agg(pl.col("n").sum())["n"].to_list() == [n_test] * 3
    assert hl.figure.is_file()


def test_report_sections_plug_into_make_report(bench, runs_dir, tmp_path):
    from r2bench.analyses.suite import report_sections
    from r2bench.report.build import make_report
    from r2bench.runs import load_runs as collect_runs

    paths = []
    for m in ("random", "popularity"):
        r = _runner(m, bench, runs_dir / "rep")
        paths += [r.original(), r.perturbed(P.target_position_spec(1)), r.perturbed(P.target_position_spec(20))]
    sections = report_sections(paths, tmp_path / "rep")
    titles = [s.title for s in sections]
    assert {"Item cold-start", "History length", "Candidate position bias"} <= set(titles)
    originals = [p for p in paths if load_runs([p])[0].perturbation is None]
    rep = make_report(collect_runs(originals), formats=["md", "html"], out=tmp_path / "rep", sections=sections)
    md = rep.files["md"].read_text()
    assert "## Candidate position bias" in md and "position.png" in md
    assert rep.files["html"].read_text().count("data:image/png;base64,") >= 4


def test_perturbed_runs_on_a_limit_find_their_original_on_the_whole_split(bench, runs_dir, tmp_path):
    """A study's layout: originals on the whole split, perturbed runs on --limit instances."""
    from r2bench.analyses.suite import analyze_selection, select

    paths = []
    for m in ("popularity", LastItem()):
        r = _runner(m, bench, runs_dir / "cover")
        paths.append(r.original())
        paths += [r.perturbed(P.history_shuffle_spec(s), limit=7) for s in range(2)]
    sel = select(paths)
    assert len(sel.groups) == 2  # the whole split, and the first 7 instances
    (res,) = analyze_selection("history-shuffle", sel, tmp_path)
    rows = {row["method"]: row for row in res.tables["shuffle"].iter_rows(named=True)}
    assert rows["popularity"]["n"] == 7 and rows["popularity"]["scores_unchanged"] is True
    assert rows["popularity"]["original_avg"] == pytest.approx(rows["popularity"]["avg"])
    assert np.isfinite(rows["last-item"]["original_avg"]) and not res.notes
    # cold-start uses the originals only: it runs on the whole split, not on the perturbed group
    (cs,) = analyze_selection("cold-start", sel, tmp_path / "cs")
    assert cs.data["n_instances"] == bench.split("test").height
