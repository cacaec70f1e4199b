"""History-order and history-length perturbations: shuffling (paper Table 7) and truncation (Figure 4b).

Both compare a method's runs on perturbed copies of the same instances:

- **shuffling**: per method, the mean metric of each seeded permutation of the
  histories; the table gives their average, standard deviation (ddof = 1), range
  (max - min) and the original chronological order's mean on the same instances.
- **truncation**: per method and ``k``, the mean metric (95% bootstrap CI) with
  only the ``k`` most recent history items kept, on the fixed sample of full-length
  histories the perturbation spec names, and the change against the longest ``k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from r2bench.analyses.order import _aligned, _by_label, score_difference
from r2bench.analyses.result import AnalysisResult
from r2bench.analyses.runs_io import RunRecord
from r2bench.analyses.stats import mean_ci, wilcoxon_p
from r2bench.errors import R2BenchError


def history_shuffle(runs: Sequence[RunRecord], metric: str = "ndcg@10", out_dir: str | Path | None = None) -> AnalysisResult:
    groups = _by_label(runs, "history_shuffle")
    if not groups:
        raise R2BenchError("the history-shuffle analysis needs runs with perturbation kind 'history_shuffle'")
    originals = {r.label: r for r in runs if r.perturbation is None and r.train_on is None}
    rows, points, notes = [], {}, []
    for label, rs in groups.items():
        rs = sorted(rs, key=lambda r: int(r.perturbation["seed"]))
        orig = originals.get(label)
        ids, arrays = _aligned(rs + ([orig] if orig else []), metric)
        perm_means = np.array([a.mean() for a in arrays[: len(rs)]])
        orig_mean = float(arrays[-1].mean()) if orig else float("nan")
        unchanged = None
        if orig is not None:
            unchanged = all(score_difference(orig, r)["invariant"] for r in rs)
        rows.append({
            "method": label, "permutations": len(rs), "n": len(ids),
            "avg": float(perm_means.mean()),
            # identical permutation means give exactly 0 (not float noise from the mean)
            "std": float(perm_means.std(ddof=1)) if len(rs) > 1 and np.ptp(perm_means) > 0 else 0.0,
            "range": float(perm_means.max() - perm_means.min()),
            "original_avg": orig_mean,
            "scores_unchanged": unchanged,
        })
        points[label] = (perm_means.tolist(), orig_mean)
        if orig is None:
            notes.append(f"{label}: no original (unperturbed) run given, so the original average is n/a")
    table = pl.DataFrame(rows)
    text = (f"Each test history is permuted with a seeded random permutation ({', '.join(str(r['permutations']) for r in rows)} "
            f"permutations per method) and the method re-scores the same instances. Avg, Std (ddof = 1) and Range "
            f"are over the permutations' mean {metric.upper()}; Original Avg uses the chronological history on the "
            f"same instances. `scores_unchanged` says whether every candidate's score stayed the same under every permutation.")
    res = AnalysisResult("history-shuffle", "History order shuffling", {"shuffle": table}, text, notes=notes,
                         data={"std": {r["method"]: r["std"] for r in rows}})
    if out_dir is not None:
        from r2bench.analyses import plots

        res.figure = plots.history_shuffle_figure(points, metric, Path(out_dir) / "history-shuffle.png")
    return res


def history_truncation(runs: Sequence[RunRecord], metric: str = "ndcg@10", out_dir: str | Path | None = None,
                       seed: int = 0) -> AnalysisResult:
    groups = _by_label(runs, "history_truncate")
    if not groups:
        raise R2BenchError("the truncation analysis needs runs with perturbation kind 'history_truncate'")
    rows, notes = [], []
    samples = set()
    for label, rs in groups.items():
        rs = sorted(rs, key=lambda r: int(r.perturbation["k"]))
        ks = [int(r.perturbation["k"]) for r in rs]
        samples.add(str(rs[0].perturbation.get("sample")))
        ids, arrays = _aligned(rs, metric)
        if len(ids) < max(r.metrics.height for r in rs):
            notes.append(f"{label}: the truncation runs do not all cover the same instances; compared on the {len(ids)} shared")
        full = arrays[-1]
        for k, r, a in zip(ks, rs, arrays):
            m, lo, hi = mean_ci(a, seed=seed)
            same = score_difference(rs[-1], r)["invariant"] if r is not rs[-1] else True
            rows.append({"method": label, "k": k, "n": len(a), "mean": m, "ci_low": lo, "ci_high": hi,
                         f"delta_vs_k{ks[-1]}": float(a.mean() - full.mean()),
                         "p_wilcoxon": wilcoxon_p(a, full) if r is not rs[-1] else float("nan"),
                         f"scores_same_as_k{ks[-1]}": same})
    if len(samples) > 1:
        notes.append(f"runs used different instance samples: {sorted(samples)}")
    table = pl.DataFrame(rows)
    long = table.rename({"k": "group"}).with_columns(pl.col("group").cast(pl.Int64).alias("group_order"),
                                                    pl.col("group").cast(pl.String))
    smp = next(iter(samples))
    text = (f"Only the k most recent history items are kept, on a fixed seeded sample of instances whose history "
            f"has full length (sample: {smp}); {metric.upper()} mean and 95% bootstrap CI per k, and the change "
            f"against the longest k (paired Wilcoxon).")
    res = AnalysisResult("truncation", "History truncation", {"truncation": table}, text, notes=notes)
    if out_dir is not None:
        from r2bench.analyses import plots

        res.figure = plots.groups_line_figure(long, metric, "most recent history items kept (k)",
                                              "Recommendation quality vs history kept",
                                              Path(out_dir) / "truncation.png", numeric_x=True)
    return res
