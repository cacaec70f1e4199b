"""The analyses by name: run them on existing runs, or make the runs they need first.

``ANALYSES`` maps each name to what it needs:

================== =========== ==========================================================
name               needs        from
================== =========== ==========================================================
cold-start          runs        unperturbed runs of several methods on one benchmark
history-length      runs        same
position            new runs    runs with ``target_position`` perturbations
history-shuffle     new runs    runs with ``history_shuffle`` perturbations (+ original)
truncation          new runs    runs with ``history_truncate`` perturbations
candidate-shuffle   new runs    runs with ``candidate_shuffle`` perturbations (+ original)
transfer            new runs    in-domain and ``train_on`` runs across benchmarks
================== =========== ==========================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r2bench.analyses.names import ANALYSES, STRATIFIED
from r2bench.analyses.result import AnalysisResult
from r2bench.analyses.runs_io import RunRecord, assign_labels, load_run_record
from r2bench.errors import R2BenchError



@dataclass
class Options:
    """Settings shared by the analyses (CLI flags map one to one)."""

    metric: str = "ndcg@10"
    reference: str | None = None  # cold-start improvements: this method over the others (default: best)
    n_bins: int = 4
    fixed_edges: tuple[int, ...] = (0, 5)
    length_edges: tuple[int, ...] = (5, 10, 15, 20)
    positions: tuple[int, ...] = (1, 10, 20)
    n_shuffles: int = 5
    ks: tuple[int, ...] = (1, 5, 10, 15, 20)
    sample_n: int | None = 100
    full_length: int | None = None  # None: the benchmark's history_len
    n_candidate_shuffles: int = 1
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def check_name(name: str) -> str:
    if name not in ANALYSES:
        import difflib

        close = difflib.get_close_matches(name, ANALYSES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise R2BenchError(f"unknown analysis {name!r}{hint} (known: {', '.join(ANALYSES)})")
    return name


def analyze_runs(name: str, runs: Sequence[RunRecord], out_dir: str | Path | None, opts: Options | None = None,
                 skipped: Sequence[dict] = ()) -> AnalysisResult:
    """Run analysis ``name`` on loaded runs; writes its figure into ``out_dir`` (when given)."""
    from r2bench.analyses import history, order, stratified, transfer

    opts = opts or Options()
    check_name(name)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    if name == "cold-start":
        return stratified.cold_start(runs, opts.metric, opts.n_bins, opts.fixed_edges, opts.reference, out_dir, seed=opts.seed)
    if name == "history-length":
        return stratified.history_length(runs, opts.metric, opts.length_edges, out_dir, seed=opts.seed)
    if name == "position":
        return order.position_bias(runs, out_dir, seed=opts.seed)
    if name == "candidate-shuffle":
        return order.candidate_shuffle(runs, opts.metric, out_dir, seed=opts.seed)
    if name == "history-shuffle":
        return history.history_shuffle(runs, opts.metric, out_dir)
    if name == "truncation":
        return history.history_truncation(runs, opts.metric, out_dir, seed=opts.seed)
    return transfer.transfer_matrix(runs, opts.metric, out_dir, skipped=skipped, seed=opts.seed)


def applicable(runs: Sequence[RunRecord]) -> list[str]:
    """The analyses these runs support (used by reports that are handed a pile of runs)."""
    kinds = {r.kind for r in runs}
    base = [r for r in runs if r.perturbation is None and r.train_on is None]
    names = []
    if base and len({r.fingerprint for r in base}) == 1:
        names += list(STRATIFIED)
    for name, kind in (("position", "target_position"), ("history-shuffle", "history_shuffle"),
                       ("truncation", "history_truncate"), ("candidate-shuffle", "candidate_shuffle")):
        if kind in kinds:
            names.append(name)
    if any(r.train_on for r in runs):
        names.append("transfer")
    return names


def analysis_results(run_paths: Sequence[str | Path], out_dir: str | Path, opts: Options | None = None) -> list[AnalysisResult]:
    """Every analysis the given runs support (figures written to ``out_dir``)."""
    runs = [load_run_record(p) for p in run_paths]
    assign_labels(runs)
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
        shown = [(n, df) for n, df in res.tables.items() if not (n.endswith("_long") or n == "cells")]
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


def full_length_for(benchmark, opts: Options) -> int:
    if opts.full_length is not None:
        return int(opts.full_length)
    return int(benchmark.manifest.get("spec", {}).get("history_len", 20))


def make_runs(name: str, methods: Sequence[str], benchmark, opts: Options, out: Path, limit: int | None = None,
              base_limit: int | None = None, overrides: dict[str, Any] | None = None,
              config_file: str | None = None, command: str | None = None) -> list[Path]:
    """Produce the runs analysis ``name`` needs for ``methods`` on ``benchmark`` (one fit per method)."""
    from r2bench.analyses.execute import MethodRunner, perturbation_plan
    from r2bench.progress import progress

    specs = perturbation_plan([name], opts.positions, opts.n_shuffles, opts.ks, opts.sample_n,
                              full_length_for(benchmark, opts), opts.seed, opts.n_candidate_shuffles)
    needs_original = name in STRATIFIED or name in ("history-shuffle", "candidate-shuffle")
    paths: list[Path] = []
    for method in methods:
        runner = MethodRunner(method, benchmark, seed=opts.seed, overrides=overrides, config_file=config_file,
                              out=out, command=command)
        if needs_original:
            paths.append(runner.original(base_limit if name in STRATIFIED else limit))
        for spec in progress(specs, desc=f"{method}: {name}", unit="run"):
            paths.append(runner.perturbed(spec, limit))
    return paths


def make_transfer_runs(methods: Sequence[Any], datasets: Sequence[Any], opts: Options, out: Path,
                       limit: int | None = None, overrides: dict[str, Any] | None = None,
                       command: str | None = None) -> tuple[list[Path], list[dict]]:
    """Every (train, test) pair over ``datasets`` for each method; cells that cannot run are returned as skipped."""
    from r2bench.analyses.execute import MethodRunner
    from r2bench.analyses.transfer import method_name_and_class, overlap_warning, transfer_problem
    from r2bench.data.benchmark import Benchmark, load_benchmark

    benches = [d if isinstance(d, Benchmark) else load_benchmark(d) for d in datasets]
    names = [b.name for b in benches]
    if len(set(names)) != len(names):
        raise R2BenchError(f"transfer needs benchmarks of different datasets, got {names}")
    paths, skipped = [], []
    for method in methods:
        mname, _ = method_name_and_class(method)
        for test_b in benches:
            runner = MethodRunner(method, test_b, seed=opts.seed, overrides=overrides, out=out, command=command)
            for train_b in benches:
                if train_b is test_b:
                    paths.append(runner.original(limit))
                    continue
                why = transfer_problem(method, train_b, test_b)
                if why:
                    skipped.append({"method": mname, "train": train_b.name, "test": test_b.name, "reason": why})
                    continue
                warn = overlap_warning(train_b, test_b)
                if warn:
                    import logging

                    logging.getLogger(__name__).warning("%s: %s", mname, warn)
                paths.append(runner.transfer(train_b, limit))
    return paths, skipped
