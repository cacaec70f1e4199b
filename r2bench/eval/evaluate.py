"""Turn a run into per-instance metrics (``metrics.parquet``).

The run is first validated against its benchmark (matching fingerprint, every
instance of the split exactly once with exactly its candidates, finite scores), then
scored by item id against the benchmark's own target, so the order in which a run
lists candidates can never matter.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from r2bench.errors import RunValidationError
from r2bench.eval.metrics import DEFAULT_METRICS, per_instance_metrics
from r2bench.eval.validate import validate_scores
from r2bench.runs import METRICS_FILE, Run, load_run

if TYPE_CHECKING:
    from r2bench.data.benchmark import Benchmark


def target_positions(instances: pl.DataFrame) -> np.ndarray:
    """Column of the target in each instance's candidate list (checked, not trusted)."""
    ok = instances.select(
        (pl.col("candidates").list.get(pl.col("target_index").cast(pl.Int64), null_on_oob=True)
         == pl.col("target")).fill_null(False).alias("ok")
    )["ok"]
    if not ok.all():
        bad = instances.filter(~ok)["instance_id"]
        raise RunValidationError(
            f"benchmark: target_index does not point at the target in instance(s) {bad.head(5).to_list()}"
        )
    return instances["target_index"].to_numpy().astype(np.int64)


def evaluate_scores(
    scores: pl.DataFrame, instances: pl.DataFrame, where: str = "scores", metrics: tuple[str, ...] = DEFAULT_METRICS
) -> pl.DataFrame:
    """Validate long-form ``scores`` against ``instances`` and return one row of metrics per instance."""
    instances = instances.sort("instance_id")
    dense = validate_scores(scores, instances, where)
    values = per_instance_metrics(dense, target_positions(instances), metrics)
    return pl.DataFrame({"instance_id": instances["instance_id"].cast(pl.Int64), **values})


def check_fingerprint(run: "Run", benchmark: "Benchmark") -> None:
    if run.fingerprint != benchmark.fingerprint:
        raise RunValidationError(
            f"run {run.path}: made on benchmark fingerprint {str(run.fingerprint)[:12]} but "
            f"{benchmark.path} has {benchmark.fingerprint[:12]}; evaluate it against the benchmark it was made on "
            f"(`r2bench verify {benchmark.path}` checks that a prepared benchmark still matches its manifest)"
        )


def scored_instances(run: Run, benchmark: "Benchmark") -> pl.DataFrame:
    """The instances of ``benchmark`` the run must have scored: its split, the first
    ``limit`` of them, or exactly the ``scored_instance_ids`` it records (runs that score
    a chosen sample, such as the history-truncation analysis)."""
    instances = benchmark.split(run.split)
    if run.limit is not None:
        instances = instances.head(int(run.limit))
    ids = run.scored_instance_ids
    if ids is not None:
        instances = instances.filter(pl.col("instance_id").is_in(ids))
    return instances


def evaluate_run(path: "str | Path | Run", benchmark: "Benchmark | None" = None, write: bool = True) -> pl.DataFrame:
    """Validate the run at ``path``, compute per-instance metrics and (by default) write
    ``<run>/metrics.parquet`` atomically. Returns the metrics frame."""
    from r2bench.atomic import atomic_path

    run = path if isinstance(path, Run) else load_run(path)
    bench = benchmark if benchmark is not None else run.benchmark()
    check_fingerprint(run, bench)
    metrics = evaluate_scores(run.scores, scored_instances(run, bench), where=f"run {run.path}")
    if write:
        with atomic_path(run.path / METRICS_FILE) as tmp:
            metrics.write_parquet(tmp)
        run.__dict__.pop("metrics", None)  # a Run that cached older metrics reads the new file
    return metrics


def run_metrics(run: Run) -> pl.DataFrame:
    """The run's per-instance metrics, evaluating it first (and writing metrics.parquet) when it has none."""
    if not run.has_metrics():
        evaluate_run(run)
    return run.metrics


def summarize(metrics: pl.DataFrame, names: tuple[str, ...] = DEFAULT_METRICS) -> dict[str, float]:
    """Mean of each metric over instances."""
    return {n: float(metrics[n].mean()) for n in names if n in metrics.columns}


def summary_table(metrics: pl.DataFrame, names: tuple[str, ...] = DEFAULT_METRICS, n_boot: int = 1000,
                  seed: int = 0, title: str = "") -> str:
    """A small plain-text table: metric, mean and bootstrap 95% CI (ranks get no CI)."""
    from r2bench.eval.significance import bootstrap_ci

    lines = [title] if title else []
    lines.append(f"{'metric':<12} {'mean':>8}   95% CI (n={metrics.height})")
    for name in names:
        if name not in metrics.columns:
            continue
        v = metrics[name].to_numpy()
        lo, hi = bootstrap_ci(v, n_boot=n_boot, seed=seed)
        lines.append(f"{name:<12} {v.mean():>8.4f}   [{lo:.4f}, {hi:.4f}]")
    return "\n".join(lines)
