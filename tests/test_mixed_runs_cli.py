"""A folder as a user fills it: full runs, --limit runs, repeated runs of one method, a changed config.

``r2bench report runs/`` and ``r2bench analyze cold-start --runs runs/`` must exit 0 with one
comparison per set of scored instances, labels that say what differs, identical runs shown
once, and ``--latest`` / ``--method`` / ``--label`` choosing what is shown.
"""

from __future__ import annotations

import json

import polars as pl
import pytest

from r2bench.cli import main


@pytest.fixture(scope="module")
def folder(tiny_benchmark_path, tmp_path_factory):
    runs = tmp_path_factory.mktemp("mixed") / "runs"
    d = str(tiny_benchmark_path)
    for extra in (["--method", "random"], ["--method", "popularity"], ["--method", "popularity", "--seed", "1"],
                  ["--method", "item-cooccurrence"], ["--method", "item-cooccurrence", "--window=3"],
                  ["--method", "random", "--seed", "1"],
                  ["--method", "random", "--limit", "3"], ["--method", "popularity", "--limit", "3"],
                  ["--method", "item-cooccurrence", "--limit", "5"]):
        assert main(["run", *extra, "--dataset", d, "--out", str(runs), "--no-evaluate"]) == 0
    return runs


def test_report_on_a_mixed_folder(folder, tmp_path, capsys):
    capsys.readouterr()
    out = tmp_path / "rep"
    assert main(["report", str(folder), "--out", str(out), "--format", "md", "--format", "csv", "--n-boot", "50"]) == 0
    printed = capsys.readouterr().out
    md = (out / "report.md").read_text()
    # what went where: printed and in the report
    assert "8 runs in 3 comparisons" in printed and "8 runs in 3 comparisons" in md
    assert "## synthetic test, first 3 instances (--limit 3)" in md
    assert "## synthetic test, first 5 instances (--limit 5)" in md
    # labels say what differs: the changed config key, the seed only where seeds differ
    assert "| item-cooccurrence window=3 |" in md and "| item-cooccurrence |" in md
    assert "| random seed=0 |" in md and "| random seed=1 |" in md
    assert "| popularity seed" not in md  # its two runs have identical scores: shown once ...
    dup = next(line for line in md.splitlines() if "identical scores" in line)
    ids = sorted(p.name for p in folder.iterdir() if "popularity" in p.name and
                 json.loads((p / "run.json").read_text())["limit"] is None)
    assert all(i in dup for i in ids)  # ... with a note naming both
    assert "a single run: shown without a significance test" in md  # the --limit 5 comparison
    csv = pl.read_csv(out / "report.csv")
    assert csv["comparison"].n_unique() == 3
    assert set(csv.filter(pl.col("comparison").str.contains("all"))["label"]) == {
        "random seed=0", "random seed=1", "popularity", "item-cooccurrence", "item-cooccurrence window=3"}
    assert (out / "ndcg10.png").stat().st_size > 5000
    # --reference: tested against where it is one run; said so where it is not
    assert main(["report", str(folder), "--out", str(out), "--no-plots", "--n-boot", "20", "--reference", "random",
                 "--format", "md", "--format", "csv"]) == 0
    md = (out / "report.md").read_text()
    assert "--reference random matches several runs (random seed=0, random seed=1)" in md
    limit3 = pl.read_csv(out / "report.csv").filter(pl.col("comparison").str.contains("first 3")
                                                    & (pl.col("label") == "popularity"))
    assert limit3.height == 3 and (limit3["compared_to"] == "random seed=0").all()


def test_filters_and_latest(folder, tmp_path, capsys):
    out = tmp_path / "rep"
    capsys.readouterr()
    assert main(["report", str(folder), "--out", str(out), "--no-plots", "--n-boot", "20", "--method", "random",
                 "--label", "random seed=1,random"]) == 0
    md = (out / "report.md").read_text()
    assert "left out by --method/--label: 6 runs" in md
    assert "| random seed=1 |" in md and "popularity" not in md.split("## Runs")[0]
    # a re-run of the same settings: --latest keeps the newest only
    d = str(json.loads(next(folder.glob("*random*/run.json")).read_text())["benchmark_path"])
    again = tmp_path / "again"
    assert main(["run", "--method", "item-cooccurrence", "--window=3", "--dataset", d, "--out", str(again),
                 "--no-evaluate"]) == 0
    capsys.readouterr()
    assert main(["report", str(folder), str(again), "--out", str(out), "--no-plots", "--n-boot", "20",
                 "--latest", "--label", "item-cooccurrence window=3"]) == 0
    md = (out / "report.md").read_text()
    newest = next(again.iterdir()).name
    assert "left out by --latest" in md and newest in md.split("## Runs")[1]
    assert md.split("## Runs")[1].count("item-cooccurrence window=3") == 1
    with pytest.raises(SystemExit):
        main(["report"])
    assert main(["report", str(folder), "--out", str(out), "--method", "sasrec"]) == 2
    assert "no run matches --method sasrec" in capsys.readouterr().err


def test_analyze_cold_start_on_a_mixed_folder(folder, tiny_benchmark, tmp_path, capsys):
    n = tiny_benchmark.split("test").height
    out = tmp_path / "an"
    capsys.readouterr()
    assert main(["analyze", "cold-start", "--runs", str(folder), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "8 runs in 3 comparisons" in printed
    subs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert subs == [f"synthetic-test-all{n}", "synthetic-test-first3", "synthetic-test-first5"]
    bins = pl.read_csv(out / f"synthetic-test-all{n}" / "cold-start_bins.csv")
    assert [c for c in bins.columns if c not in ("group", "n")] == [
        "random seed=0", "random seed=1", "popularity", "item-cooccurrence", "item-cooccurrence window=3"]
    imp = pl.read_csv(out / f"synthetic-test-all{n}" / "cold-start_improvement.csv")
    per_bin = imp.group_by("group").agg(pl.col("other"))
    for others in per_bin["other"].to_list():  # every other run once per bin: no duplicated popularity rows
        assert len(others) == len(set(others)) == 4
    index = (out / "cold-start.md").read_text()
    assert index.count("## Item cold-start: synthetic test") == 3
    for sub in subs:
        assert (out / sub / "cold-start.png").stat().st_size > 5000


def test_evaluate_a_run_that_does_not_exist(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "does-not-exist")]) == 2
    err = capsys.readouterr().err
    assert "no such run" in err and "does-not-exist" in err
