"""Paired significance tests and bootstrap confidence intervals over per-instance metrics.

- Two-sided paired Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, zero
  differences dropped as in Wilcoxon's original method); when every difference is
  zero the runs are indistinguishable and p = 1.
- Markers as in the paper: † p < 0.05, ‡ p < 0.01, § p < 0.001.
- Bootstrap 95% CIs of a mean and paired bootstrap CIs of a mean difference
  (percentile method, seeded, vectorised in blocks of resamples).
- Holm's step-down correction across a family of tests (metrics x datasets).

Two runs are only compared on the same benchmark fingerprint and the same set of
instances; anything else raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from r2bench.errors import R2BenchError

if TYPE_CHECKING:
    from r2bench.runs import Run

MARKERS = ((0.001, "§"), (0.01, "‡"), (0.05, "†"))
TABLE_METRICS = ("ndcg@1", "ndcg@5", "ndcg@10")


def marker(p: float | None) -> str:
    """† p<0.05, ‡ p<0.01, § p<0.001, '' otherwise (or for None/NaN)."""
    if p is None or not np.isfinite(p):
        return ""
    for bound, sym in MARKERS:
        if p < bound:
            return sym
    return ""


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired Wilcoxon signed-rank p-value of ``a`` vs ``b`` (1.0 when a == b)."""
    from scipy.stats import wilcoxon

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise R2BenchError(f"paired test needs equal lengths, got {a.shape} and {b.shape}")
    d = a - b
    if d.size == 0 or np.all(np.abs(d) <= 1e-12 * np.maximum(1.0, np.abs(a))):
        return 1.0
    return float(wilcoxon(a, b, zero_method="wilcox", alternative="two-sided").pvalue)


def _boot_means(values: np.ndarray, n_boot: int, seed: int, block: int = 200) -> np.ndarray:
    """Bootstrap means [n_boot, m] of ``values`` [n, m], resampling rows (shared across columns)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    n = values.shape[0]
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, values.shape[1]))
    for start in range(0, n_boot, block):
        b = min(block, n_boot - start)
        idx = rng.integers(0, n, size=(b, n))
        out[start:start + b] = values[idx].mean(axis=1)
    return out


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) CI of the mean of ``values``."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return (float("nan"), float("nan"))
    means = _boot_means(values, n_boot, seed)[:, 0]
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def paired_bootstrap_ci(a: np.ndarray, b: np.ndarray, n_boot: int = 1000, alpha: float = 0.05,
                        seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of mean(a - b), resampling instances jointly."""
    return bootstrap_ci(np.asarray(a, float) - np.asarray(b, float), n_boot, alpha, seed)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1); NaNs stay NaN."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adj, 1.0)
    return out


def aligned_metrics(runs: Sequence["Run"], metrics: Sequence[str] = TABLE_METRICS) -> list[pl.DataFrame]:
    """Per-instance metrics of runs on ONE benchmark, sorted by instance_id; raises when
    fingerprints or instance sets differ."""
    if not runs:
        return []
    fps = {r.fingerprint for r in runs}
    if len(fps) > 1:
        detail = ", ".join(f"{r.run_id} [{str(r.fingerprint)[:12]}]" for r in runs)
        raise R2BenchError(f"cannot compare runs made on different benchmark fingerprints: {detail}")
    frames = [r.metrics().sort("instance_id") for r in runs]
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


def run_labels(runs: Sequence["Run"]) -> list[str]:
    """Display labels, made unique per dataset by appending the seed or run id."""
    labels = [r.label for r in runs]
    seen: dict[tuple[str, str], int] = {}
    for r, lab in zip(runs, labels):
        seen[(r.dataset, lab)] = seen.get((r.dataset, lab), 0) + 1
    out = []
    for r, lab in zip(runs, labels):
        if seen[(r.dataset, lab)] > 1:
            lab = f"{lab} (seed {r.meta.get('seed')}, {r.run_id[-6:]})"
        out.append(lab)
    return out


def compare_runs(runs: Sequence["Run"], options: CompareOptions | None = None) -> pl.DataFrame:
    """One row per (dataset, run, metric): mean, bootstrap CI, the run it is tested
    against, the paired Wilcoxon p-value (Holm-adjusted when asked), the marker, and the
    paired bootstrap CI of the mean difference."""
    opt = options or CompareOptions()
    labels = run_labels(runs)
    by_dataset: dict[str, list[int]] = {}
    for i, r in enumerate(runs):
        by_dataset.setdefault(r.dataset, []).append(i)
    rows: list[dict] = []
    for dataset, idxs in by_dataset.items():
        group = [runs[i] for i in idxs]
        frames = aligned_metrics(group, opt.metrics)
        names = [labels[i] for i in idxs]
        if opt.reference not in (None, "best") and opt.reference not in names:
            raise R2BenchError(
                f"reference {opt.reference!r} is not among the runs on {dataset}: {', '.join(names)}"
            )
        for metric in opt.metrics:
            vals = [f[metric].to_numpy().astype(np.float64) for f in frames]
            means = np.array([v.mean() for v in vals])
            order = np.argsort(-means, kind="stable")
            best = int(order[0])
            for j, v in enumerate(vals):
                lo, hi = bootstrap_ci(v, opt.n_boot, opt.alpha, opt.seed)
                other = None
                if opt.reference in (None, "best"):
                    if j == best and len(vals) > 1:
                        other = int(order[1])
                elif names[j] != opt.reference:
                    other = names.index(opt.reference)
                p = dlo = dhi = float("nan")
                if other is not None:
                    p = wilcoxon_p(v, vals[other])
                    dlo, dhi = paired_bootstrap_ci(v, vals[other], opt.n_boot, opt.alpha, opt.seed)
                rows.append({
                    "dataset": dataset, "fingerprint": group[j].fingerprint, "run_id": group[j].run_id,
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
