"""A new analysis is one module plus its test: this file is both.

``REVERSED`` below is a complete analysis with its own perturbation kind (candidate
lists reversed), declared the way the built-in ones are. The fixture registers it in
the project's registry for the duration of a test, and the tests run it through the
same commands as the built-in analyses (``analyze``, ``study``, ``report --analyses``)
without any other file knowing about it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from r2bench.analyses.base import Analysis, has_kind
from r2bench.analyses.pairing import aligned, by_label, originals_by_label, score_difference
from r2bench.analyses.registry import ANALYSES
from r2bench.analyses.result import AnalysisResult
from r2bench.cli import main
from r2bench.errors import R2BenchError

NAME = "reversed-candidates"
KIND = "reverse_candidates"


def reverse(instances: pl.DataFrame, spec: dict) -> pl.DataFrame:
    """The candidate lists back to front (the target index follows)."""
    k = pl.col("candidates").list.len()
    return instances.with_columns(pl.col("candidates").list.reverse(),
                                  (k - 1 - pl.col("target_index")).cast(instances.schema["target_index"])
                                  .alias("target_index"))


def compute(runs, opts, skipped) -> AnalysisResult:
    originals = originals_by_label(runs)
    rows = []
    for label, (rev, *_) in by_label(runs, KIND).items():
        orig = originals[label]
        _, (a, b) = aligned([orig, rev], opts.metric)
        rows.append({"method": label, "original": float(a.mean()), "reversed": float(b.mean()),
                     "scores_unchanged": score_difference(orig, rev)["invariant"]})
    table = pl.DataFrame(rows)
    return AnalysisResult(NAME, "Reversed candidate lists", {"reversal": table},
                          f"{opts.metric.upper()} with every candidate list reversed.", plot_data=table)


def draw(res: AnalysisResult, path: Path) -> Path:
    from matplotlib.figure import Figure

    table = res.plot_data
    fig = Figure(figsize=(4, 3))
    ax = fig.subplots()
    x = np.arange(table.height)
    ax.bar(x - 0.2, table["original"].to_numpy(), 0.4, label="original")
    ax.bar(x + 0.2, table["reversed"].to_numpy(), 0.4, label="reversed")
    ax.set_xticks(x, table["method"].to_list())
    ax.legend()
    fig.savefig(path, format="png")
    return path


REVERSED = Analysis(
    name=NAME, title="Reversed candidate lists", paper="-", compute=compute, draw=draw,
    original="limit", perturbations=lambda opts, bench: [{"kind": KIND}], transform=reverse,
    applies=has_kind(KIND),
)


@pytest.fixture
def registered():
    ANALYSES.register(NAME, f"{__name__}:REVERSED", "toy: candidate lists reversed")
    yield NAME
    ANALYSES.unregister(NAME)


def test_analyze_makes_its_runs_and_writes_its_outputs(registered, tiny_benchmark_path, tmp_path, capsys):
    out = tmp_path / "an"
    rc = main(["analyze", NAME, "--method", "popularity,random", "--dataset", str(tiny_benchmark_path),
               "--limit", "6", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    table = pl.read_csv(out / f"{NAME}_reversal.csv")
    rows = {r["method"]: r for r in table.iter_rows(named=True)}
    # popularity and random score each candidate on its own: reversing the list changes nothing
    assert rows["popularity"]["scores_unchanged"] and rows["random"]["scores_unchanged"]
    assert rows["popularity"]["original"] == pytest.approx(rows["popularity"]["reversed"])
    assert (out / f"{NAME}.png").stat().st_size > 1000 and f"![Reversed candidate lists]({NAME}.png)" in \
        (out / f"{NAME}.md").read_text()
    made = [json.loads(p.read_text()) for p in (out / "runs").glob("*/run.json")]
    # per method (fitted once): the original run and one reversed run, on the first 6 instances
    kinds = sorted((m["perturbation"] or {}).get("kind", "original") for m in made)
    assert kinds == sorted([KIND, KIND, "original", "original"])
    assert {m["n_instances"] for m in made} == {6}
    # the same analysis from the run folders alone, as for every built-in one
    assert main(["analyze", NAME, "--runs", str(out / "runs"), "--out", str(tmp_path / "again")]) == 0
    assert pl.read_csv(tmp_path / "again" / f"{NAME}_reversal.csv").equals(table)


def test_study_and_report_pick_it_up_from_the_registry(registered, tiny_benchmark_path, tmp_path):
    from r2bench.analyses.study import study_analyses

    assert NAME in study_analyses()  # a study runs it by default, after the built-in ones
    out = tmp_path / "study"
    rc = main(["study", "--dataset", str(tiny_benchmark_path), "--methods", "random,popularity",
               "--analyses", f"cold-start,{NAME}", "--out", str(out)])
    assert rc == 0
    md = (out / "report.md").read_text()
    assert "## Item cold-start" in md and "## Reversed candidate lists" in md
    assert (out / "analyses" / f"{NAME}.png").is_file()
    rc = main(["report", str(out / "runs"), "--analyses", "--format", "md", "--out", str(tmp_path / "rep")])
    assert rc == 0
    rep = (tmp_path / "rep" / "report.md").read_text()
    assert "## Reversed candidate lists" in rep and f"{NAME}.png" in rep


def test_unknown_and_unregistered_names_get_the_registry_error(tiny_benchmark_path, capsys):
    assert main(["analyze", NAME, "--method", "popularity", "--dataset", str(tiny_benchmark_path)]) == 2
    assert f"unknown analysis {NAME!r}" in capsys.readouterr().err  # it exists only while a test registers it
    assert main(["analyze", "cold-strat", "--runs", "x"]) == 2
    assert "did you mean 'cold-start'?" in capsys.readouterr().err


def test_a_module_that_declares_an_analysis_is_found_without_being_listed(tmp_path):
    """Built-ins are discovered from their source: dropping a module in is all it takes."""
    from r2bench.analyses.registry import ANALYSES, all_analyses, discover

    (tmp_path / "late.py").write_text(
        "from r2bench.analyses.base import Analysis\n"
        "ANALYSIS = Analysis(name='late-one', title='Late', paper='-', order=90, compute=None)\n")
    (tmp_path / "early.py").write_text(
        "import polars\nfrom r2bench.analyses.base import Analysis\n"
        "ANALYSIS = Analysis(\n    name='early-one', title='Early', paper='Table 9', order=5,\n    compute=None)\n")
    (tmp_path / "helpers.py").write_text("def helper():\n    return 1\nANALYSIS_NOTE = 'not an analysis'\n")
    (tmp_path / "_private.py").write_text("ANALYSIS = Analysis(name='hidden', title='x', paper='-')\n")
    assert discover(tmp_path, "pkg") == [("early-one", "pkg.early:ANALYSIS", "Early"),
                                         ("late-one", "pkg.late:ANALYSIS", "Late")]
    (tmp_path / "bad.py").write_text("NAME = 'x'\nANALYSIS = Analysis(name=NAME, title='x', paper='-')\n")
    with pytest.raises(R2BenchError, match="bad.py.*string literal"):
        discover(tmp_path, "pkg")
    # the shipped ones: every discovered module imports to the analysis it declared, in `order`
    names = ANALYSES.in_order(entry_points=False)
    assert names[:3] == ["cold-start", "history-length", "position"] and "transfer" in names
    loaded = all_analyses()
    assert [a.name for a in loaded][: len(names)] == names
    assert [a.order for a in loaded] == sorted(a.order for a in loaded)
