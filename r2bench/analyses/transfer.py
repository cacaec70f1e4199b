"""Cross-dataset transfer: fit on benchmark A, score benchmark B, and the matrix of paper Table 6.

Rows are the benchmark a method was fitted on, columns the benchmark it scored;
the diagonal is in-domain. Cells that could not be run say why instead of failing:

- a method whose class says ``transferable = False`` cannot be fitted on one
  benchmark and scored on another;
- an ID-based method fitted on A knows nothing about B's items when the item ids do
  not overlap: :func:`transfer_problem` measures the overlap up front, and a finished
  run whose scores are tied within every instance is flagged after the fact.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from r2bench.analyses.result import AnalysisResult
from r2bench.analyses.runs_io import RunRecord
from r2bench.analyses.stats import mean_ci
from r2bench.errors import R2BenchError

CORNER = "train \\ test"


def item_overlap(train_bench, test_bench, split: str = "test") -> float:
    """Share of the candidate items of ``test_bench``'s split that appear in ``train_bench``'s items."""
    known = set(train_bench.items["item_id"].to_list())
    cands = test_bench.split(split)["candidates"].explode().unique().to_list()
    return float(np.mean([c in known for c in cands])) if cands else 0.0


def method_name_and_class(method) -> tuple[str, type]:
    """(name, class) of a registered method name, a method class or a method instance."""
    if isinstance(method, str):
        from r2bench.methods import method_class

        return method, method_class(method)
    cls = method if isinstance(method, type) else type(method)
    return (getattr(method, "name", "") or cls.__name__), cls


def transfer_problem(method, train_bench, test_bench, split: str = "test") -> str | None:
    """Why ``method`` fitted on ``train_bench`` cannot meaningfully score ``test_bench`` (None if it can).

    Non-transferable methods are refused; transferable ones are refused only when no
    candidate item of the test benchmark exists in the training benchmark *and* the
    method declares itself ID-based (``id_based = True``); otherwise a zero overlap
    is reported as a warning by :func:`overlap_warning`.
    """
    if train_bench.fingerprint == test_bench.fingerprint:
        return None
    obj = method  # an instance (or wrapper) answers for itself; a name answers through its class
    method, cls = method_name_and_class(method)
    if isinstance(obj, str):
        obj = cls
    if not getattr(obj, "transferable", True):
        return (f"{method} cannot transfer: it learns item ids of the benchmark it is fitted on "
                f"(transferable = False), so it cannot score {test_bench.name} after fitting on {train_bench.name}")
    if getattr(obj, "id_based", False) and item_overlap(train_bench, test_bench, split) == 0.0:
        return (f"{method} is ID-based and none of {test_bench.name}'s candidate items occurs in "
                f"{train_bench.name}: every candidate would get the same score")
    return None


def overlap_warning(train_bench, test_bench, split: str = "test") -> str | None:
    if train_bench.fingerprint == test_bench.fingerprint:
        return None
    ov = item_overlap(train_bench, test_bench, split)
    if ov < 0.5:
        return (f"only {100 * ov:.1f}% of {test_bench.name}'s candidate items occur in {train_bench.name}: "
                f"ID-based methods can only tell known items apart")
    return None


def all_tied(run: RunRecord) -> bool:
    """True when every instance's candidates all got the same score (nothing was learned to transfer)."""
    per = run.scores.group_by("instance_id").agg((pl.col("score").max() - pl.col("score").min()).alias("spread"))
    return bool((per["spread"].abs() <= 1e-12).all())


def transfer_matrix(runs: Sequence[RunRecord], metric: str = "ndcg@10", out_dir: str | Path | None = None,
                    skipped: Sequence[dict] = (), seed: int = 0) -> AnalysisResult:
    """Matrix per method from in-domain runs and ``train_on`` runs (perturbed runs are ignored).

    ``skipped``: cells that were not run, as dicts ``{method, train, test, reason}``.
    """
    usable = [r for r in runs if r.perturbation is None]
    if not usable and not skipped:
        raise R2BenchError("the transfer matrix needs runs (in-domain and --train-on runs)")
    long_rows, notes = [], []
    for r in usable:
        vals = r.metrics[metric].to_numpy()
        m, lo, hi = mean_ci(vals, seed=seed)
        tied = all_tied(r) if r.train_on else False
        if tied:
            notes.append(f"{r.method}: trained on {r.train_dataset}, tested on {r.dataset}: every candidate got the "
                         f"same score (an ID-based method that knows none of the items); the cell is chance level")
        long_rows.append({"method": r.method, "train": r.train_dataset, "test": r.dataset, "n": len(vals),
                          "mean": m, "ci_low": lo, "ci_high": hi, "status": "all tied" if tied else "ok", "run": r.run_id})
    for s in skipped:
        long_rows.append({"method": s["method"], "train": s["train"], "test": s["test"], "n": 0, "mean": float("nan"),
                          "ci_low": float("nan"), "ci_high": float("nan"), "status": f"not run: {s['reason']}", "run": ""})
        notes.append(f"{s['method']}: {s['train']} -> {s['test']} not run: {s['reason']}")
    long = pl.DataFrame(long_rows)
    dupes = long.group_by("method", "train", "test").len().filter(pl.col("len") > 1)
    if dupes.height:
        raise R2BenchError(f"several runs for the same (method, train, test): {dupes.rows()[:3]}; pass one run per cell")
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
        tables[f"matrix_{method}"] = mat
    tables["cells"] = long
    text = (f"{metric.upper()} of each method fitted on one benchmark (rows) and scoring another (columns) without "
            f"further training; the diagonal is in-domain. Empty cells were not run (the reason is listed).")
    res = AnalysisResult("transfer", "Cross-dataset transfer", tables, text, notes=notes)
    if out_dir is not None:
        from r2bench.analyses import plots

        res.figure = plots.transfer_figure(matrices, metric, Path(out_dir) / "transfer.png")
    return res
