"""Report tables and extra sections (the analyses add theirs through Section)."""

from __future__ import annotations

import polars as pl
import pytest

from r2bench.pipeline import run_method
from r2bench.report.build import Section, make_report
from r2bench.report.tables import build_table, group_of, to_latex, to_markdown
from r2bench.runs import load_run


@pytest.fixture(scope="module")
def runs(tiny_benchmark_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("rep_runs")
    return [load_run(run_method(m, tiny_benchmark_path, out=out, split="val"))
            for m in ("item-cooccurrence", "random", "popularity")]


def test_groups():
    assert group_of("random") == "Sanity baselines"
    assert group_of("sasrec") == "Conventional recommenders"
    assert group_of("llm-listwise") == "LLM-based" and group_of("r2rank") == "R2Rank"
    assert group_of("my-method") == "Other"


def test_markdown_table_layout(runs):
    rep = make_report(runs, formats=(), out=runs[0].path.parent / "r0", plots=False, n_boot=100)
    table = build_table(rep.compare)
    md = to_markdown(table)
    lines = md.splitlines()
    assert lines[0].startswith("| Method |") and "@10" in lines[0]
    # canonical order inside the group, whatever the order of the runs given
    body = [ln.split("|")[1].strip() for ln in lines[3:6]]
    assert body == ["random", "popularity", "item-cooccurrence"]
    best = rep.compare.filter(pl.col("is_best") & (pl.col("metric") == "ndcg@10"))["label"][0]
    assert any(ln.startswith(f"| {best} |") and "**" in ln for ln in lines)
    assert "\\textbf" in to_latex(table) and "multicolumn" in to_latex(table)


def test_extra_sections_and_info_columns(runs, tmp_path):
    pytest.importorskip("matplotlib")
    runs[1].meta["info"] = {"parse": {"valid": 0.9, "partial": 0.05, "unusable": 0.05},
                            "usage": {"prompt_tokens": 10, "completion_tokens": 5}}
    png = tmp_path / "extra.png"
    from r2bench.report.plots import bar_chart

    rep0 = make_report(runs, formats=(), out=tmp_path / "a", plots=False, n_boot=50)
    bar_chart(rep0.compare, png, "ndcg@5")
    sec = Section("Cold start", table=pl.DataFrame({"bin": ["rare"], "ndcg@10": [0.25]}), images=[png],
                  text="by target frequency")
    rep = make_report(runs, formats=("md", "html", "latex"), out=tmp_path / "b", sections=[sec], n_boot=50)
    md = rep.files["md"].read_text()
    assert "## Cold start" in md and "| rare | 0.2500 |" in md and "parse valid" in md and "tokens" in md
    html = rep.files["html"].read_text()
    assert "<h2>Cold start</h2>" in html and html.count("data:image/png;base64,") == 2
    assert "Cold start" in rep.files["latex"].read_text()


def test_unknown_format(runs, tmp_path):
    from r2bench.errors import R2BenchError

    with pytest.raises(R2BenchError, match="unknown report format"):
        make_report(runs, formats=("pdf",), out=tmp_path)
