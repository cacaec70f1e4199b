"""Per-instance ranking metrics with exact expected values under tied scores.

Everything works on dense arrays: ``scores[n, K]`` (higher is better) and, for the
usual one-positive protocol, ``target_index[n]`` (the column of the positive).

Definitions (the paper's section 3.1, Järvelin & Kekäläinen 2002), rank ``r`` is
1-based:

- ``ndcg@k`` = DCG@k / IDCG@k with DCG@k = sum_{r<=k} (2^rel_r - 1) / log2(r + 1).
  With one positive (rel = 1) IDCG@k = 1, so ``ndcg@k = [r <= k] / log2(r + 1)``.
- ``hr@k`` = [r <= k] (hit rate / recall with one positive).
- ``mrr`` = 1 / r (``mrr@k`` = [r <= k] / r).
- ``target_rank`` = r.

**Ties.** A method that gives tied scores must not gain (or lose) from the order in
which candidates happen to be stored, so every metric is the *exact expectation over
all orders of the tied candidates*, in closed form. If ``g`` candidates score
strictly higher than the target and the target ties with ``t - 1`` others, its rank is
uniform on ``g+1 .. g+t`` and

    E[f(r)] = (F(g + t) - F(g)) / t,    F(m) = sum_{r=1}^{m} f(r)

with ``F`` a prefix sum tabulated once for r = 0..K. Constant scores therefore earn
exactly the random expectation: for K = 20, ndcg@1 = 0.05, ndcg@5 = 0.1474,
ndcg@10 = 0.2272 (mean over r = 1..20 of [r <= 10] / log2(r + 1)).

**Graded relevance** (:func:`expected_ndcg`): by linearity of expectation,
E[DCG@k] = sum_i gain_i * E[disc(r_i)], and a candidate in a tie group occupying
positions p+1 .. p+t has rank uniform on them, so each member of the group is given
the *average* discount of the positions the group occupies (0 beyond k). IDCG@k
does not depend on the order, so E[NDCG@k] = E[DCG@k] / IDCG@k exactly. Rows
with no relevant candidate get NDCG 0.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

#: The metrics written to every run's metrics.parquet, in this order.
DEFAULT_METRICS: tuple[str, ...] = (
    "ndcg@1", "ndcg@5", "ndcg@10", "hr@1", "hr@5", "hr@10", "mrr", "target_rank",
)

_NAME = re.compile(r"^(ndcg|hr|mrr)(?:@(\d+))?$|^target_rank$")


def parse_metric(name: str) -> tuple[str, int | None]:
    """``"ndcg@10"`` -> ``("ndcg", 10)``; ``"mrr"`` -> ``("mrr", None)``."""
    m = _NAME.match(name.strip().lower())
    if not m:
        raise ValueError(
            f"unknown metric {name!r}; expected ndcg@k, hr@k, mrr, mrr@k or target_rank"
        )
    if name.strip().lower() == "target_rank":
        return "target_rank", None
    kind, k = m.group(1), m.group(2)
    if kind in ("ndcg", "hr") and k is None:
        raise ValueError(f"metric {name!r} needs a cut-off, e.g. {kind}@10")
    if k is not None and int(k) < 1:
        raise ValueError(f"metric {name!r}: the cut-off must be >= 1")
    return kind, (int(k) if k is not None else None)


def _gain_table(kind: str, k: int | None, n_candidates: int) -> np.ndarray:
    """Prefix sums F(m) = sum_{r=1}^{m} f(r) for m = 0..K of the per-rank value f."""
    r = np.arange(1, n_candidates + 1, dtype=np.float64)
    cut = np.ones_like(r) if k is None else (r <= k).astype(np.float64)
    if kind == "ndcg":
        f = cut / np.log2(r + 1.0)
    elif kind == "hr":
        f = cut
    elif kind == "mrr":
        f = cut / r
    elif kind == "target_rank":
        f = r
    else:  # pragma: no cover - parse_metric guards this
        raise ValueError(kind)
    return np.concatenate(([0.0], np.cumsum(f)))


def _check_scores(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-d array [n, K], got shape {scores.shape}")
    if not np.isfinite(scores).all():
        bad = np.flatnonzero(~np.isfinite(scores).all(axis=1))[:5]
        raise ValueError(f"scores must be finite; rows {bad.tolist()} contain NaN or inf")
    return scores


def tie_counts(scores: np.ndarray, target_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(g, t)`` per row: candidates scoring strictly above the target, and the size of
    the target's tie group (the target included, so t >= 1)."""
    scores = _check_scores(scores)
    target_index = np.asarray(target_index, dtype=np.int64)
    n, k = scores.shape
    if target_index.shape != (n,):
        raise ValueError(f"target_index must have shape ({n},), got {target_index.shape}")
    if n and (target_index.min() < 0 or target_index.max() >= k):
        raise ValueError(f"target_index must lie in 0..{k - 1}")
    target = scores[np.arange(n), target_index][:, None]
    greater = (scores > target).sum(axis=1)
    tied = (scores == target).sum(axis=1)
    return greater, tied


def expected_from_ties(name: str, greater: np.ndarray, tied: np.ndarray, n_candidates: int) -> np.ndarray:
    """Exact expected value of metric ``name`` when the rank is uniform on g+1..g+t."""
    kind, k = parse_metric(name)
    table = _gain_table(kind, k, n_candidates)
    g = np.asarray(greater, dtype=np.int64)
    t = np.asarray(tied, dtype=np.int64)
    return (table[g + t] - table[g]) / t


def per_instance_metrics(
    scores: np.ndarray, target_index: np.ndarray, metrics: Sequence[str] = DEFAULT_METRICS
) -> dict[str, np.ndarray]:
    """Metric name -> float64 array [n] for one positive per row at ``target_index``.

    >>> m = per_instance_metrics(np.zeros((1, 20)), np.array([3]))
    >>> round(float(m["ndcg@10"][0]), 4)
    0.2272
    """
    scores = _check_scores(scores)
    greater, tied = tie_counts(scores, target_index)
    return {name: expected_from_ties(name, greater, tied, scores.shape[1]) for name in metrics}


def random_expectation(name: str, n_candidates: int = 20) -> float:
    """The value of ``name`` for constant (or uniformly random) scores: one positive among K."""
    return float(expected_from_ties(name, np.array([0]), np.array([n_candidates]), n_candidates)[0])


def _tie_group_bounds(sorted_desc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each position j of rows sorted in descending order, the 0-based start and
    exclusive end of the run of equal values containing j."""
    n, k = sorted_desc.shape
    idx = np.broadcast_to(np.arange(k), (n, k))
    new_group = np.ones((n, k), dtype=bool)
    new_group[:, 1:] = sorted_desc[:, 1:] != sorted_desc[:, :-1]
    start = np.maximum.accumulate(np.where(new_group, idx, 0), axis=1)
    ends_here = np.ones((n, k), dtype=bool)
    ends_here[:, :-1] = new_group[:, 1:]
    # the end of a group is the first "ends_here" at or after j (+1), scanned from the right
    rev = np.where(ends_here, idx, k)[:, ::-1]
    end = np.minimum.accumulate(rev, axis=1)[:, ::-1] + 1
    return start, end


def expected_dcg(scores: np.ndarray, relevance: np.ndarray, k: int | None = None) -> np.ndarray:
    """Exact E[DCG@k] per row over all orders of tied scores (graded relevance).

    Gain 2^rel - 1, discount 1/log2(r+1) for r <= k (0 beyond); each member of a tie
    group gets the average discount of the positions its group occupies.
    """
    scores = _check_scores(scores)
    rel = np.asarray(relevance, dtype=np.float64)
    if rel.shape != scores.shape:
        raise ValueError(f"relevance shape {rel.shape} differs from scores shape {scores.shape}")
    n, K = scores.shape
    table = _gain_table("ndcg", k, K)
    order = np.argsort(-scores, axis=1, kind="stable")
    sorted_scores = np.take_along_axis(scores, order, axis=1)
    start, end = _tie_group_bounds(sorted_scores)
    avg_disc = (table[end] - table[start]) / (end - start)
    gains = np.exp2(np.take_along_axis(rel, order, axis=1)) - 1.0
    return (gains * avg_disc).sum(axis=1)


def ideal_dcg(relevance: np.ndarray, k: int | None = None) -> np.ndarray:
    """IDCG@k per row: relevance sorted in decreasing order."""
    rel = np.asarray(relevance, dtype=np.float64)
    table = _gain_table("ndcg", k, rel.shape[1])
    disc = np.diff(table)  # per-rank discount, 0 beyond k
    gains = np.exp2(-np.sort(-rel, axis=1)) - 1.0
    return (gains * disc).sum(axis=1)


def expected_ndcg(scores: np.ndarray, relevance: np.ndarray, k: int | None = None) -> np.ndarray:
    """Exact E[NDCG@k] per row for graded relevance ``relevance[n, K]`` (0 where IDCG = 0)."""
    dcg = expected_dcg(scores, relevance, k)
    idcg = ideal_dcg(relevance, k)
    out = np.zeros_like(dcg)
    np.divide(dcg, idcg, out=out, where=idcg > 0)
    return out
