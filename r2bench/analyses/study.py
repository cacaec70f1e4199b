"""``r2bench study``: run the methods, every stratified and perturbation analysis, write one report.

Layout of the output folder::

    <out>/runs/<run-id>/...        every run (original and perturbed), normal run folders
    <out>/analyses/<name>.png      one figure per analysis, plus its tables (.csv/.md/.tex)
    <out>/report.md, report.html   the full report (HTML is self-contained: images inlined)
    <out>/study.json               settings, run ids, timings

Each method is fitted once; the perturbed runs reuse the fitted model
(:class:`r2bench.analyses.execute.MethodRunner`). ``limit`` caps the instances of the
perturbation runs (the expensive ones for LLM methods); ``base_limit`` caps the
original runs the stratified analyses use (default: the whole split).
"""

from __future__ import annotations

import base64
import html
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from r2bench.analyses.base import Options
from r2bench.analyses.registry import all_analyses, get_analysis
from r2bench.analyses.result import AnalysisResult
from r2bench.analyses.suite import analyze_selection, select
from r2bench.atomic import write_json, write_text
from r2bench.errors import R2BenchError
from r2bench.report.render import frame_to_html, frame_to_markdown, inline_markdown_html
from r2bench.runs import Run, load_run

log = logging.getLogger(__name__)


def overall_table(runs: Sequence[Run], seed: int = 0) -> pl.DataFrame:
    from r2bench.analyses.stats import mean_ci

    rows = []
    for r in runs:
        row: dict[str, Any] = {"method": r.label, "n": r.metrics.height}
        for m in ("ndcg@1", "ndcg@5", "ndcg@10"):
            mean, lo, hi = mean_ci(r.metrics[m].to_numpy(), seed=seed)
            row[m] = f"{mean:.4f} [{lo:.3f}, {hi:.3f}]"
        t = r.meta.get("timings") or {}
        row["fit_s"] = float(t.get("fit_s", float("nan")))
        row["score_s"] = float(t.get("score_s", float("nan")))
        rows.append(row)
    return pl.DataFrame(rows)


def study_analyses() -> list[str]:
    """The analyses a study runs by default: every registered one that works on one dataset."""
    return [a.name for a in all_analyses() if not a.several_datasets]


def run_study(dataset: str, methods: Sequence[str], out: str | Path, *, limit: int | None = None,
              base_limit: int | None = None, analyses: Sequence[str] | None = None,
              opts: Options | None = None, command: str | None = None) -> Path:
    """Run everything and write the report; returns the report.md path."""
    from r2bench.analyses.execute import MethodRunner
    from r2bench.data.benchmark import load_benchmark
    from r2bench.progress import progress

    opts = opts or Options()
    if not methods:
        raise R2BenchError("a study needs at least one method (--methods a,b,c)")
    chosen = [get_analysis(a) for a in (study_analyses() if analyses is None else analyses)]
    several = [a.name for a in chosen if a.several_datasets]
    if several:
        raise R2BenchError(f"study runs on one dataset; {', '.join(several)} needs "
                           + " / ".join(f"`r2bench analyze {n}`" for n in several))
    analyses = [a.name for a in chosen]
    out = Path(out)
    runs_dir, an_dir = out / "runs", out / "analyses"
    bench = load_benchmark(dataset)
    specs = [(a, spec) for a in chosen if a.perturbations for spec in a.perturbations(opts, bench)]
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    originals: list[Run] = []
    perturbed: list[Run] = []
    for method in methods:
        t0 = time.perf_counter()
        runner = MethodRunner(method, bench, seed=opts.seed, out=runs_dir, command=command)
        originals.append(load_run(runner.original(base_limit)))
        for a, spec in progress(specs, desc=f"{method}: perturbations", unit="run"):
            try:
                perturbed.append(load_run(runner.perturbed(spec, limit, transform=a.transform, select=a.select)))
            except R2BenchError as exc:  # e.g. no full-length history on a small benchmark
                log.warning("%s: %s skipped: %s", method, spec, exc)
        timings[method] = round(time.perf_counter() - t0, 2)
    sel = select(originals + perturbed)
    all_runs = sel.runs
    results: list[AnalysisResult] = []
    t_an = time.perf_counter()
    for name in analyses:
        try:
            for res in analyze_selection(name, sel, an_dir, opts):
                res.write(res.folder or an_dir)
                results.append(res)
        except R2BenchError as exc:
            results.append(AnalysisResult(name, name, summary=f"Not available: {exc}"))
    timings["analyses"] = round(time.perf_counter() - t_an, 2)
    timings["total"] = round(time.perf_counter() - t_start, 2)
    overall = overall_table([r for r in all_runs if r.perturbation is None], opts.seed)
    meta = {
        "dataset": bench.name, "fingerprint": bench.fingerprint, "methods": list(methods), "limit": limit,
        "base_limit": base_limit, "analyses": list(analyses), "options": asdict(opts), "timings_s": timings,
        "runs": [r.run_id for r in all_runs], "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }
    write_json(out / "study.json", meta)
    title = f"r2bench study: {bench.name} [{bench.fingerprint[:12]}]"
    intro = (f"Methods: {', '.join(methods)}. Original runs on the {'first ' + str(base_limit) if base_limit else 'whole'} "
             f"test split; perturbation runs on {'the first ' + str(limit) if limit else 'all'} test instances. "
             f"{len(all_runs)} runs, total {timings['total']:.0f} s (per method, fit once + all runs: "
             + ", ".join(f"{m} {timings[m]:.0f} s" for m in methods) + ").")
    md = write_markdown(out / "report.md", title, intro, overall, results)
    write_html(out / "report.html", title, intro, overall, results)
    return md


def write_markdown(path: Path, title: str, intro: str, overall: pl.DataFrame, results: Sequence[AnalysisResult]) -> Path:
    parts = [f"# {title}", "", intro, "", "## Overall (test, mean [95% CI])", "", frame_to_markdown(overall), ""]
    for res in results:
        parts.append(res.markdown(image_dir=path.parent))
    write_text(path, "\n".join(parts) + "\n")
    return path


CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
       "table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px;display:block;overflow-x:auto}td,th{border:1px solid #ccc;padding:3px 7px}"
       "th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%;border:1px solid #eee}.note{color:#a33}")


def result_html(res: AnalysisResult) -> str:
    parts = [f"<h2>{html.escape(res.title)}</h2>"]
    if res.summary:
        parts.append(f"<p>{inline_markdown_html(res.summary)}</p>")
    if res.figure is not None and Path(res.figure).is_file():
        data = base64.b64encode(Path(res.figure).read_bytes()).decode()
        parts.append(f'<img alt="{html.escape(res.title)}" src="data:image/png;base64,{data}">')
    for tname, df in res.display_tables():
        parts += [f"<h4>{html.escape(tname.replace('_', ' '))}</h4>", frame_to_html(df)]
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in res.notes]
    return "\n".join(parts)


def write_html(path: Path, title: str, intro: str, overall: pl.DataFrame, results: Sequence[AnalysisResult]) -> Path:
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{inline_markdown_html(intro)}</p>", "<h2>Overall (test, mean [95% CI])</h2>",
            frame_to_html(overall)]
    body += [result_html(r) for r in results]
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")
    write_text(path, doc)
    return path
