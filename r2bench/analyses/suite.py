"""Running analyses by name: on existing runs, or making the runs they need first.

Everything here is generic: what an analysis needs and computes is declared by its
:class:`~r2bench.analyses.base.Analysis` in the registry
(:mod:`r2bench.analyses.registry`). ``r2bench analyze`` calls :func:`make_runs` (or
takes existing runs), groups them (:func:`select`: one comparison per benchmark, split
and set of scored instances, ``--latest`` and filters) and calls
:func:`analyze_selection`, which computes the analysis on each group it applies to
(:func:`analyze_runs` on that group's runs; a group of perturbed runs whose originals
scored more instances gets those originals too). ``r2bench report --analyses`` calls
:func:`report_sections` (every analysis whose ``applies`` accepts some group).

The analyses consume runs from disk only (the run artifact is the contract), so they
work on runs produced by anyone. Runs without ``metrics.parquet`` are evaluated when
loaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r2bench.analyses.base import Analysis, Options
from r2bench.analyses.registry import all_analyses, get_analysis
from r2bench.analyses.result import AnalysisResult
from r2bench.errors import R2BenchError
from r2bench.runs import Run, label_runs
from r2bench.runs import load_runs as _load_runs

if TYPE_CHECKING:
    from r2bench.report.select import RunGroup, Selection

__all__ = ["Options", "load_runs", "analyze_runs", "analyze_selection", "applicable", "analysis_results",
           "report_sections", "make_runs"]


def load_runs(items: Iterable[str | Path]) -> list[Run]:
    """Runs from run folders, run ids or folders of runs, evaluated and labelled
    (:func:`r2bench.runs.run_labels`), as one flat list (no grouping; see :func:`select`)."""
    from r2bench.eval.evaluate import run_metrics
    from r2bench.report.select import fill_config_changes

    runs = _load_runs(items)
    fill_config_changes(runs)
    for r in runs:
        run_metrics(r)
    return label_runs(runs)


def select(items: "Iterable[str | Path | Run] | Selection", **filters: Any) -> "Selection":
    """:func:`r2bench.report.select.select_runs` (grouped, filtered, labelled), every run evaluated."""
    from r2bench.eval.evaluate import run_metrics
    from r2bench.report.select import Selection, select_runs

    sel = items if isinstance(items, Selection) else select_runs(items, **filters)
    for r in sel.runs:
        run_metrics(r)
    return sel


def analyze_runs(name: str, runs: Sequence[Run], out_dir: str | Path | None, opts: Options | None = None,
                 skipped: Sequence[dict] = ()) -> AnalysisResult:
    """Run analysis ``name`` on loaded runs, as they are (one comparison); draws its figure into ``out_dir``."""
    analysis = get_analysis(name)
    opts = opts or Options()
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    result = analysis.compute(runs, opts, skipped)
    if out_dir is not None and analysis.draw is not None:
        result.figure = analysis.draw(result, Path(out_dir) / f"{analysis.name}.png")
    result.folder = Path(out_dir) if out_dir is not None else None
    return result


def _identity(r: Run) -> str:
    return json.dumps([r.method, r.meta.get("config"), r.meta.get("seed"), r.meta.get("label"), r.train_on],
                      sort_keys=True, default=str)


def _covering_originals(sel: "Selection", group: "RunGroup") -> list[Run]:
    """For perturbed runs whose unperturbed run scored more instances (a study's originals on
    the whole split, its perturbed runs on --limit): that original, from another group."""
    have = {_identity(r) for r in group.originals}
    need = {_identity(r) for r in group.runs if r.perturbation is not None} - have
    ids = set(group.runs[0].instance_ids)
    found: dict[str, Run] = {}
    for g in sel.groups:
        if g is group or g.key[:3] != group.key[:3] or not ids <= set(g.runs[0].instance_ids):
            continue
        for r in g.originals:
            k = _identity(r)
            if k in need and (k not in found or len(r.instance_ids) < len(found[k].instance_ids)):
                found[k] = r
    return list(found.values())


def _units(analysis: Analysis, sel: "Selection", explicit: bool) -> list[tuple["RunGroup | None", list[Run]]]:
    """The (group, runs) an analysis is computed on: each group it applies to (``explicit``:
    asked for by name, so an analysis without ``applies`` takes every group), or, for an
    analysis across datasets, every run at once."""
    if analysis.several_datasets:
        return [(None, sel.runs)] if explicit or analysis.supports(sel.runs) else []
    units = []
    for g in sel.groups:
        runs = list(g.runs) + (_covering_originals(sel, g) if analysis.original == "limit" else [])
        if analysis.supports(runs) or (explicit and analysis.applies is None):
            units.append((g, runs))
    return units


def analyze_selection(name: str, sel: "Selection", out_dir: str | Path, opts: Options | None = None,
                      skipped: Sequence[dict] = (), explicit: bool = True) -> list[AnalysisResult]:
    """Analysis ``name`` on every group of ``sel`` it applies to: one result per comparison
    (figures and tables in ``out_dir``, or in ``out_dir/<group>/`` when there are several)."""
    analysis = get_analysis(name)
    units = _units(analysis, sel, explicit)
    if not units:
        raise R2BenchError(f"analysis {name!r} applies to none of these runs ({analysis.title} needs "
                           f"{'unperturbed runs' if analysis.original == 'base' else 'its perturbed runs'}; "
                           f"`r2bench analyze {name} --method M --dataset D` makes them).\n" + sel.summary())
    results = []
    for group, runs in units:
        folder = Path(out_dir) if len(units) == 1 or group is None else Path(out_dir) / group.slug
        try:
            res = analyze_runs(name, runs, folder, opts, skipped)
        except R2BenchError as exc:
            if len(units) == 1:
                raise
            res = AnalysisResult(name, analysis.title, summary=f"Not available: {exc}", folder=folder)
        if group is not None:
            res.group = group.title if len(sel.groups) > 1 else ""
            res.notes = [*group.notes, *res.notes]
        results.append(res)
    return results


def applicable(runs: "Sequence[Run] | Selection") -> list[str]:
    """The analyses these runs support, in registration order (for reports handed a pile of runs)."""
    sel = select(runs) if not hasattr(runs, "groups") else runs
    return [a.name for a in all_analyses() if _units(a, sel, explicit=False)]


def analysis_results(runs: "Sequence[str | Path | Run] | Selection", out_dir: str | Path,
                     opts: Options | None = None) -> list[AnalysisResult]:
    """Every analysis the given runs support, on each group it applies to (figures in ``out_dir``)."""
    sel = select(runs)
    results = []
    for name in applicable(sel):
        try:
            results += analyze_selection(name, sel, out_dir, opts,
                                         explicit=False)
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
            sections.append(Section(res.heading, text=text, images=images))
        for i, (name, df) in enumerate(shown):
            title = res.heading if i == 0 else f"{res.heading}: {name.replace('_', ' ')}"
            sections.append(Section(title, table=df, images=images if i == 0 else [], text=text if i == 0 else ""))
    return sections


def report_sections(runs: "Sequence[str | Path | Run] | Selection", out_dir: str | Path,
                    opts: Options | None = None) -> list:
    """The analyses the given runs support, as report sections (for ``r2bench report``)."""
    return to_sections(analysis_results(runs, out_dir, opts))


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
