"""Comparing runs side by side: per (dataset, run, metric) the mean, its bootstrap CI, and
the paired test against the run it is compared with (the report's Table 2 and its CSV).

Two runs are only compared on the same benchmark fingerprint, split and set of
instances: :func:`compare_runs` groups any pile of runs that way
(:mod:`r2bench.report.select`) and compares within each group. The statistics
themselves are :mod:`r2bench.eval.significance`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from r2bench.errors import R2BenchError
from r2bench.eval.evaluate import run_metrics
from r2bench.eval.significance import bootstrap_ci, holm, marker, paired_bootstrap_ci, wilcoxon_p
from r2bench.runs import Run

if TYPE_CHECKING:
    from r2bench.report.select import Selection

#: the metrics of the report's main table (the paper's Table 2)
TABLE_METRICS = ("ndcg@1", "ndcg@5", "ndcg@10")


def aligned_metrics(runs: Sequence[Run], metrics: Sequence[str] = TABLE_METRICS) -> list[pl.DataFrame]:
    """Per-instance metrics of runs on ONE benchmark, sorted by instance_id; raises when
    fingerprints or instance sets differ."""
    if not runs:
        return []
    fps = {r.fingerprint for r in runs}
    if len(fps) > 1:
        detail = ", ".join(f"{r.run_id} [{str(r.fingerprint)[:12]}]" for r in runs)
        raise R2BenchError(f"cannot compare runs made on different benchmark fingerprints: {detail}")
    frames = [run_metrics(r).sort("instance_id") for r in runs]
    ids = frames[0]["instance_id"]
    for r, f in zip(runs[1:], frames[1:]):
        if not f["instance_id"].equals(ids):
            raise R2BenchError(
                f"cannot compare {runs[0].run_id} and {r.run_id}: different instance sets "
                f"({ids.len()} vs {f.height} instances; same split and --limit needed)"
            )
        if r.split != runs[0].split:
            raise R2BenchError(f"cannot compare runs on different splits: {runs[0].run_id}, {r.run_id}")
    for r, f in zip(runs, frames):
        missing = [m for m in metrics if m not in f.columns]
        if missing:
            raise R2BenchError(f"run {r.run_id}: metrics.parquet lacks {', '.join(missing)}")
    return frames


@dataclass
class CompareOptions:
    metrics: tuple[str, ...] = TABLE_METRICS
    #: None / "best": the best run per (dataset, metric) is tested against the runner-up;
    #: a label: every other run is tested against that run.
    reference: str | None = None
    holm: bool = False
    n_boot: int = 1000
    alpha: float = 0.05
    seed: int = 0


def reference_index(names: Sequence[str], runs: Sequence[Run], reference: str) -> int | None:
    """The run ``reference`` names in one comparison: its label, else the only run of that method."""
    if reference in names:
        return list(names).index(reference)
    of_method = [i for i, r in enumerate(runs) if r.method == reference]
    return of_method[0] if len(of_method) == 1 else None


def compare_runs(runs: "Sequence[Run] | Selection", options: CompareOptions | None = None) -> pl.DataFrame:
    """One row per (comparison, run, metric): mean, bootstrap CI, the run it is tested
    against, the paired Wilcoxon p-value (Holm-adjusted when asked), the marker, and the
    paired bootstrap CI of the mean difference.

    Runs are compared within their group of :func:`r2bench.report.select.select_runs`
    (one benchmark, split and set of scored instances; perturbed runs are left out): a
    plain list of runs is selected first. A group of one run has no test. ``reference``
    (a label, or a method with one run) is tested against in every group that has it;
    a group without it falls back to the best against the runner-up. The ``comparison``
    column is the group's title, ``column`` its table column name.
    """
    from r2bench.report.select import Selection, select_runs

    opt = options or CompareOptions()
    sel = runs if isinstance(runs, Selection) else select_runs(runs)
    if opt.reference not in (None, "best") and not any(
            reference_index([r.label for r in g.originals], g.originals, opt.reference) is not None
            for g in sel.groups):
        labels = sorted({r.label for r in sel.runs})
        raise R2BenchError(f"reference {opt.reference!r} is not among the runs: {', '.join(labels)}")
    rows: list[dict] = []
    for g in sel.groups:
        group = g.originals
        if not group:
            continue
        frames = aligned_metrics(group, opt.metrics)
        names = [r.label for r in group]
        ref = None if opt.reference in (None, "best") else reference_index(names, group, opt.reference)
        for metric in opt.metrics:
            vals = [f[metric].to_numpy().astype(np.float64) for f in frames]
            means = np.array([v.mean() for v in vals])
            order = np.argsort(-means, kind="stable")
            best = int(order[0])
            for j, v in enumerate(vals):
                lo, hi = bootstrap_ci(v, opt.n_boot, opt.alpha, opt.seed)
                other = None
                if ref is None:
                    if j == best and len(vals) > 1:
                        other = int(order[1])
                elif j != ref:
                    other = ref
                p = dlo = dhi = float("nan")
                if other is not None:
                    p = wilcoxon_p(v, vals[other])
                    dlo, dhi = paired_bootstrap_ci(v, vals[other], opt.n_boot, opt.alpha, opt.seed)
                rows.append({
                    "comparison": g.title, "column": g.column, "dataset": g.dataset,
                    "fingerprint": group[j].fingerprint, "split": g.split, "run_id": group[j].run_id,
                    "method": group[j].method, "label": names[j], "metric": metric, "n": int(v.size),
                    "mean": float(means[j]), "ci_low": lo, "ci_high": hi, "is_best": j == best,
                    "compared_to": names[other] if other is not None else None, "p_value": p,
                    "diff_ci_low": dlo, "diff_ci_high": dhi,
                })
    df = pl.DataFrame(rows, infer_schema_length=None)
    if df.height == 0:
        return df
    p = df["p_value"].to_numpy()
    adj = holm(p) if opt.holm else p
    return df.with_columns(
        pl.Series("p_adjusted", adj, dtype=pl.Float64),
        pl.Series("marker", [marker(x) for x in adj], dtype=pl.String),
    )
