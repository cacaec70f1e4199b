"""Running analyses by name: on existing runs, or making the runs they need first.

Everything here is generic: what an analysis needs and computes is declared by its
:class:`~r2bench.analyses.base.Analysis` in the registry
(:mod:`r2bench.analyses.registry`). ``r2bench analyze`` calls :func:`make_runs` then
:func:`analyze_runs`; ``r2bench report --analyses`` calls :func:`report_sections` with
the runs it was given (every analysis whose ``applies`` accepts them).

The analyses consume runs from disk only (the run artifact is the contract), so they
work on runs produced by anyone. Runs without ``metrics.parquet`` are evaluated when
loaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from r2bench.analyses.base import Analysis, Options
from r2bench.analyses.registry import all_analyses, get_analysis
from r2bench.analyses.result import AnalysisResult
from r2bench.errors import R2BenchError
from r2bench.runs import Run, label_runs
from r2bench.runs import load_runs as _load_runs

__all__ = ["Options", "load_runs", "analyze_runs", "applicable", "analysis_results", "report_sections", "make_runs"]


def load_runs(items: Iterable[str | Path]) -> list[Run]:
    """Runs from run folders, run ids or folders of runs, evaluated, with their analysis labels
    (the method, plus the run id where runs of one method differ in more than the perturbation)."""
    from r2bench.eval.evaluate import run_metrics

    runs = _load_runs(items)
    for r in runs:
        run_metrics(r)
    return label_runs(runs, "analysis")


def analyze_runs(name: str, runs: Sequence[Run], out_dir: str | Path | None, opts: Options | None = None,
                 skipped: Sequence[dict] = ()) -> AnalysisResult:
    """Run analysis ``name`` on loaded runs; draws its figure into ``out_dir`` (when given)."""
    analysis = get_analysis(name)
    opts = opts or Options()
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    result = analysis.compute(runs, opts, skipped)
    if out_dir is not None and analysis.draw is not None:
        result.figure = analysis.draw(result, Path(out_dir) / f"{analysis.name}.png")
    return result


def applicable(runs: Sequence[Run]) -> list[str]:
    """The analyses these runs support, in registration order (for reports handed a pile of runs)."""
    return [a.name for a in all_analyses() if a.supports(runs)]


def analysis_results(run_paths: Sequence[str | Path], out_dir: str | Path, opts: Options | None = None) -> list[AnalysisResult]:
    """Every analysis the given runs support (figures written to ``out_dir``)."""
    runs = load_runs(run_paths)
    results = []
    for name in applicable(runs):
        try:
            results.append(analyze_runs(name, runs, out_dir, opts))
        except R2BenchError as exc:
            results.append(AnalysisResult(name, name, summary=f"Not available: {exc}"))
    return results


def to_sections(results: Sequence[AnalysisResult]) -> list:
    """``r2bench.report.build.Section`` objects for ``make_report(..., sections=...)``:
    one per display table (long tables stay in the CSVs), the figure in the first."""
    from r2bench.report.build import Section

    sections = []
    for res in results:
        shown = res.display_tables()
        text = " ".join([res.summary.strip(), *res.notes]).strip()
        images = [res.figure] if res.figure is not None else []
        if not shown:
            sections.append(Section(res.title, text=text, images=images))
        for i, (name, df) in enumerate(shown):
            title = res.title if i == 0 else f"{res.title}: {name.replace('_', ' ')}"
            sections.append(Section(title, table=df, images=images if i == 0 else [], text=text if i == 0 else ""))
    return sections


def report_sections(run_paths: Sequence[str | Path], out_dir: str | Path, opts: Options | None = None) -> list:
    """The analyses the given runs support, as report sections (for ``r2bench report``)."""
    return to_sections(analysis_results(run_paths, out_dir, opts))


def make_runs(name: str | Analysis, methods: Sequence[Any], datasets: Sequence[Any], opts: Options, out: Path,
              limit: int | None = None, base_limit: int | None = None, overrides: dict[str, Any] | None = None,
              config_file: str | None = None, command: str | None = None) -> tuple[list[Path], list[dict]]:
    """Produce the runs analysis ``name`` needs for ``methods``: ``(run folders, skipped cells)``.

    By default on one dataset: per method (fitted once) its original run, when the
    analysis needs one (on the first ``base_limit`` or ``limit`` instances), and one run
    per perturbation spec on the first ``limit`` instances. An analysis with its own
    ``make_runs`` (transfer, across datasets) makes them its own way.
    """
    from r2bench.analyses.execute import MethodRunner
    from r2bench.pipeline import as_benchmark
    from r2bench.progress import progress

    analysis = name if isinstance(name, Analysis) else get_analysis(name)
    if analysis.make_runs is not None:
        return analysis.make_runs(methods, datasets, opts, out, limit=limit, base_limit=base_limit,
                                  overrides=overrides, config_file=config_file, command=command)
    if len(datasets) != 1:
        raise R2BenchError(f"analyze {analysis.name} takes one --dataset")
    benchmark = as_benchmark(datasets[0])
    specs = analysis.perturbations(opts, benchmark) if analysis.perturbations else []
    paths: list[Path] = []
    for method in methods:
        runner = MethodRunner(method, benchmark, seed=opts.seed, overrides=overrides, config_file=config_file,
                              out=out, command=command)
        if analysis.original is not None:
            paths.append(runner.original(base_limit if analysis.original == "base" else limit))
        for spec in progress(specs, desc=f"{runner.name}: {analysis.name}", unit="run"):
            paths.append(runner.perturbed(spec, limit, transform=analysis.transform, select=analysis.select))
    return paths, []
