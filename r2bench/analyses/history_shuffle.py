"""History-order shuffling (paper Table 7): does a method's quality move when each history is permuted?

Per method, the mean metric of each seeded permutation of the histories; the table gives
their average, standard deviation (ddof = 1), range (max - min) and the original
chronological order's mean on the same instances, and whether every candidate's score
stayed the same under every permutation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from r2bench.analyses import perturb as P
from r2bench.analyses import plots
from r2bench.analyses.base import Analysis, has_kind, methods_of, plot_with
from r2bench.analyses.pairing import aligned, by_label, originals_by_label, score_difference
from r2bench.analyses.result import AnalysisResult
from r2bench.errors import R2BenchError
from r2bench.runs import Run


def history_shuffle(runs: Sequence[Run], metric: str = "ndcg@10") -> AnalysisResult:
    groups = by_label(runs, "history_shuffle")
    if not groups:
        raise R2BenchError("the history-shuffle analysis needs runs with perturbation kind 'history_shuffle'")
    originals = originals_by_label(runs)
    rows, points, notes = [], {}, []
    for label, rs in groups.items():
        rs = sorted(rs, key=lambda r: int(r.perturbation["seed"]))
        orig = originals.get(label)
        ids, arrays = aligned(rs + ([orig] if orig else []), metric)
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
    counts = sorted({r["permutations"] for r in rows})
    per = (f"{counts[0]} permutations per method" if len(counts) == 1 else
           "permutations per method: " + ", ".join(f"{r['method']} {r['permutations']}" for r in rows))
    text = (f"Each test history is permuted with a seeded random permutation ({per}) "
            f"and the method re-scores the same instances. Avg, Std (ddof = 1) and Range "
            f"are over the permutations' mean {metric.upper()}; Original Avg uses the chronological history on the "
            f"same instances. `scores_unchanged` says whether every candidate's score stayed the same under every permutation.")
    return AnalysisResult("history-shuffle", "History order shuffling", {"shuffle": table}, text, notes=notes,
                          data={"std": {r["method"]: r["std"] for r in rows}},
                          plot_data={"points": points, "metric": metric, "method_of": methods_of(runs)})


ANALYSIS = Analysis(
    name="history-shuffle", title="History order shuffling", paper="Table 7", order=40,
    compute=lambda runs, opts, skipped: history_shuffle(runs, opts.metric),
    draw=plot_with(plots.history_shuffle_figure),
    original="limit",
    perturbations=lambda opts, bench: [P.history_shuffle_spec(opts.seed + i) for i in range(opts.n_shuffles)],
    applies=has_kind("history_shuffle"),
)
