"""Paired significance tests and bootstrap confidence intervals over per-instance metrics.

- Two-sided paired Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, zero
  differences dropped as in Wilcoxon's original method); when every difference is
  zero the runs are indistinguishable and p = 1.
- Markers as in the paper: † p < 0.05, ‡ p < 0.01, § p < 0.001.
- Bootstrap 95% CIs of a mean and paired bootstrap CIs of a mean difference
  (percentile method, seeded, vectorised in blocks of resamples).
- Holm's step-down correction across a family of tests (metrics x datasets).

Numbers only: comparing runs (which runs, on which instances, against which) is
:mod:`r2bench.report.compare`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from r2bench.errors import R2BenchError

MARKERS = ((0.001, "§"), (0.01, "‡"), (0.05, "†"))


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
