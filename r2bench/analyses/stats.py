"""Small statistics used by the analyses: means with bootstrap CIs and paired tests.

Thin wrappers over ``r2bench.eval.significance`` (the one place that defines the
bootstrap and the Wilcoxon test) plus a Friedman test across several paired
samples, with the degenerate cases (no pairs, every difference zero) answered
explicitly instead of raising or returning NaN silently.
"""

from __future__ import annotations

import numpy as np

DEFAULT_RESAMPLES = 2000


def mean_ci(values, confidence: float = 0.95, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap CI of the mean (r2bench.eval.significance). NaNs when empty."""
    from r2bench.eval.significance import bootstrap_ci

    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(x.mean())
    if x.size == 1 or np.all(x == x[0]):
        return mean, mean, mean
    lo, hi = bootstrap_ci(x, n_boot=n_resamples, alpha=1.0 - confidence, seed=seed)
    return mean, lo, hi


def wilcoxon_p(a, b) -> float:
    """Two-sided paired Wilcoxon signed-rank p-value (1.0 when a == b); NaN for no pairs."""
    from r2bench.eval.significance import wilcoxon_p as _w

    if np.asarray(a).size == 0:
        return float("nan")
    return _w(a, b)


def friedman_p(*samples) -> float:
    """Friedman test across >= 3 paired samples; 1.0 when every row is constant."""
    arr = np.vstack([np.asarray(s, dtype=np.float64) for s in samples])
    if arr.shape[0] < 3 or arr.shape[1] < 2:
        return float("nan")
    if np.allclose(arr, arr[0:1, :], atol=1e-12):
        return 1.0
    from scipy.stats import friedmanchisquare

    p = float(friedmanchisquare(*arr).pvalue)
    return p


def stars(p: float) -> str:
    """The paper's markers: † p<0.05, ‡ p<0.01, § p<0.001."""
    from r2bench.eval.significance import marker

    return marker(p)
