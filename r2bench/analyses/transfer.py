"""Cross-dataset transfer (paper Table 6): fit on benchmark A, score benchmark B, for every pair.

Rows are the benchmark a method was fitted on, columns the benchmark it scored; the
diagonal is in-domain. Cells that could not be run say why instead of failing:

- a method whose class says ``transferable = False`` cannot be fitted on one
  benchmark and scored on another;
- an ID-based method fitted on A knows nothing about B's items when the item ids do
  not overlap: :func:`r2bench.pipeline.transfer_problem` measures the overlap up
  front, and a finished run whose scores are tied within every instance is flagged
  after the fact.

Unlike the other analyses it makes runs across several datasets (:func:`make_transfer_runs`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from r2bench.analyses import plots
from r2bench.analyses.base import Analysis, Options, plot_with
from r2bench.analyses.result import AnalysisResult
from r2bench.analyses.stats import mean_ci
from r2bench.errors import R2BenchError
from r2bench.runs import Run

CORNER = "train \\ test"


def all_tied(run: Run) -> bool:
    """True when every instance's candidates all got the same score (nothing was learned to transfer)."""
    per = run.scores.group_by("instance_id").agg((pl.col("score").max() - pl.col("score").min()).alias("spread"))
    return bool((per["spread"].abs() <= 1e-12).all())


def transfer_matrix(runs: Sequence[Run], metric: str = "ndcg@10", skipped: Sequence[dict] = (),
                    seed: int = 0) -> AnalysisResult:
    """Matrix per method from in-domain runs and ``train_on`` runs (perturbed runs are ignored).

    ``skipped``: cells that were not run, as dicts ``{method, train, test, reason}``.
    """
    usable = [r for r in runs if r.perturbation is None]
    if not usable and not skipped:
        raise R2BenchError("the transfer matrix needs runs (in-domain and --train-on runs)")
    usable, notes = _one_per_cell(usable)
    long_rows = []
    method_of: dict[str, str] = {}
    for r in usable:
        method_of[_matrix_label(r)] = r.method
    labels_of_method: dict[str, set[str]] = {}
    for lab, m in method_of.items():
        labels_of_method.setdefault(m, set()).add(lab)
    for r in usable:
        vals = r.metrics[metric].to_numpy()
        m, lo, hi = mean_ci(vals, seed=seed)
        tied = all_tied(r) if r.train_on else False
        if tied:
            notes.append(f"{r.method}: trained on {r.train_dataset}, tested on {r.dataset}: every candidate got the "
                         f"same score (an ID-based method that knows none of the items); the cell is chance level")
        long_rows.append({"method": _matrix_label(r), "train": r.train_dataset, "test": r.dataset, "n": len(vals),
                          "mean": m, "ci_low": lo, "ci_high": hi, "status": "all tied" if tied else "ok", "run": r.run_id})
    for s in skipped:
        # a cell that was not run goes to the matrix of its method's runs (when they have one label)
        same = labels_of_method.get(s["method"], set())
        long_rows.append({"method": next(iter(same)) if len(same) == 1 else s["method"], "train": s["train"], "test": s["test"], "n": 0, "mean": float("nan"),
                          "ci_low": float("nan"), "ci_high": float("nan"), "status": f"not run: {s['reason']}", "run": ""})
        notes.append(f"{s['method']}: {s['train']} -> {s['test']} not run: {s['reason']}")
    long = pl.DataFrame(long_rows)
    datasets = sorted(set(long["train"].to_list()) | set(long["test"].to_list()))
    tables, matrices = {}, {}
    for method in long["method"].unique(maintain_order=True).to_list():
        part = long.filter(pl.col("method") == method)
        # cells not run are null (rendered empty / "n/a"), not NaN
        cell = {(t, s): (None if v is None or np.isnan(v) else v)
                for t, s, v in part.select("train", "test", "mean").iter_rows()}
        mat = pl.DataFrame({CORNER: datasets, **{c: [cell.get((r, c)) for r in datasets] for c in datasets}},
                           schema={CORNER: pl.String, **{c: pl.Float64 for c in datasets}})
        matrices[method] = mat
        tables["matrix_" + re.sub(r"[^A-Za-z0-9._-]+", "_", method).strip("_")] = mat
    tables["cells"] = long
    text = (f"{metric.upper()} of each method fitted on one benchmark (rows) and scoring another (columns) without "
            f"further training; the diagonal is in-domain. Empty cells were not run (the reason is listed).")
    return AnalysisResult("transfer", "Cross-dataset transfer", tables, text, notes=notes,
                          plot_data={"matrices": matrices, "metric": metric, "method_of": method_of})


def _matrix_label(run: Run) -> str:
    """The run's label without its "(trained on D)" marker: one matrix per method and config."""
    return run.label.replace(f" (trained on {run.train_dataset})", "") if run.train_on else run.label


def _one_per_cell(runs: Sequence[Run]) -> tuple[list[Run], list[str]]:
    """The newest run per (matrix, train, test) cell; a note names the older ones left out."""
    cells: dict[tuple[str, str, str], list[Run]] = {}
    for r in runs:
        cells.setdefault((_matrix_label(r), r.train_dataset, r.dataset), []).append(r)
    kept, notes = [], []
    for (lab, train, test), rs in cells.items():
        rs = sorted(rs, key=lambda r: r.created_order)
        kept.append(rs[-1])
        if len(rs) > 1:
            notes.append(f"{lab}: {train} -> {test} has {len(rs)} runs; the newest ({rs[-1].run_id}) is shown, "
                         f"left out: {', '.join(r.run_id for r in rs[:-1])}")
    return kept, notes


def make_transfer_runs(methods: Sequence[Any], datasets: Sequence[Any], opts: Options, out: Path,
                       limit: int | None = None, overrides: dict[str, Any] | None = None,
                       command: str | None = None, **_: Any) -> tuple[list[Path], list[dict]]:
    """Every (train, test) pair over ``datasets`` for each method; cells that cannot run are returned as skipped."""
    from r2bench.analyses.execute import MethodRunner
    from r2bench.data.benchmark import Benchmark, load_benchmark
    from r2bench.pipeline import method_name_and_class, overlap_warning, transfer_problem

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
                    logging.getLogger(__name__).warning("%s: %s", mname, warn)
                paths.append(runner.transfer(train_b, limit))
    return paths, skipped


ANALYSIS = Analysis(
    name="transfer", title="Cross-dataset transfer", paper="Table 6", order=70,
    compute=lambda runs, opts, skipped: transfer_matrix(runs, opts.metric, skipped=skipped, seed=opts.seed),
    draw=plot_with(plots.transfer_figure),
    original=None,
    applies=lambda runs: any(r.train_on for r in runs),
    make_runs=make_transfer_runs,
    several_datasets=True,
)
