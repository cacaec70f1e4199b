"""Candidate shuffling: is every candidate's score unchanged when the candidate list is reordered?

Each candidate list is shuffled with a seeded permutation and the method re-scores the
same instances; the per-(instance, candidate) scores are compared with the original
order's (relative tolerance 1e-6). Methods that declare themselves pointwise
(``BaseMethod.pointwise``) must be invariant; a violation is reported loudly.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from r2bench.analyses import perturb as P
from r2bench.analyses import plots
from r2bench.analyses.base import Analysis, has_kind, methods_of, plot_with
from r2bench.analyses.pairing import RTOL, aligned, by_label, declared_pointwise, originals_by_label, score_difference
from r2bench.analyses.result import AnalysisResult
from r2bench.analyses.stats import mean_ci, wilcoxon_p
from r2bench.errors import R2BenchError
from r2bench.runs import Run


def candidate_shuffle(runs: Sequence[Run], metric: str = "ndcg@10", seed: int = 0) -> AnalysisResult:
    """Permutation-invariance check: the original order against seeded candidate shuffles."""
    shuffled = by_label(runs, "candidate_shuffle")
    originals = originals_by_label(runs)
    if not shuffled:
        raise R2BenchError("the candidate-shuffle analysis needs runs with perturbation kind 'candidate_shuffle'")
    rows, notes, bars = [], [], []
    for label, rs in shuffled.items():
        orig = originals.get(label)
        if orig is None:
            raise R2BenchError(f"{label}: candidate-shuffled runs but no original (unperturbed) run to compare with")
        declared = declared_pointwise(orig)
        for r in sorted(rs, key=lambda r: int(r.perturbation.get("seed", 0))):
            d = score_difference(orig, r)
            _, (a, b) = aligned([orig, r], metric)
            ma, mb = float(a.mean()), float(b.mean())
            rows.append({"method": label, "seed": int(r.perturbation.get("seed", 0)), "n": len(a),
                         "original": ma, "shuffled": mb, "delta": mb - ma, "p_wilcoxon": wilcoxon_p(a, b),
                         "max_abs_score_diff": d["max_abs_diff"], "share_instances_changed": d["share_changed"],
                         "declared_pointwise": declared, "permutation_invariant": d["invariant"]})
            bars.append((label, r.perturbation.get("seed", 0), mean_ci(a, seed=seed), mean_ci(b, seed=seed), d["invariant"]))
            if declared and not d["invariant"]:
                notes.append(f"VIOLATION: {label} declares itself pointwise but its scores change when candidates are shuffled "
                             f"(seed {r.perturbation.get('seed')}, max |diff| {d['max_abs_diff']:.3g})")
    table = pl.DataFrame(rows)
    text = (f"Each candidate list is shuffled with a seeded permutation and the method re-scores the same instances. "
            f"Permutation invariant = every candidate keeps its score (relative tolerance {RTOL:g}). "
            f"{metric.upper()} is shown for the original and the shuffled order with a paired Wilcoxon test.")
    return AnalysisResult("candidate-shuffle", "Candidate shuffling (permutation invariance)", {"invariance": table},
                          text, notes=notes, data={"invariant": {r["method"]: r["permutation_invariant"] for r in rows}},
                          plot_data={"bars": bars, "metric": metric, "method_of": methods_of(runs)})


ANALYSIS = Analysis(
    name="candidate-shuffle", title="Candidate shuffling (permutation invariance)", paper="-", order=60,
    compute=lambda runs, opts, skipped: candidate_shuffle(runs, opts.metric, seed=opts.seed),
    draw=plot_with(plots.candidate_shuffle_figure),
    original="limit",
    perturbations=lambda opts, bench: [P.candidate_shuffle_spec(opts.seed + i)
                                       for i in range(opts.n_candidate_shuffles)],
    applies=has_kind("candidate_shuffle"),
)
