"""The quickstart's sanity checks, as text: random vs its analytic expectation, others vs random."""

from __future__ import annotations

import polars as pl

from r2bench.eval.metrics import random_expectation


def random_check_lines(compare: pl.DataFrame, reference: str | None = "random") -> list[str]:
    """One line per metric: does random's CI contain the analytic value; is each other run
    significantly different from random (its marker and p-value)."""
    lines = []
    rnd = compare.filter(pl.col("method") == "random")
    for r in rnd.iter_rows(named=True):
        want = random_expectation(r["metric"])
        ok = r["ci_low"] <= want <= r["ci_high"]
        lines.append(
            f"random {r['metric']:<8} {r['mean']:.4f}, 95% CI [{r['ci_low']:.4f}, {r['ci_high']:.4f}] "
            f"{'contains' if ok else 'does NOT contain'} the analytic {want:.4f}"
        )
    if reference:
        others = compare.filter((pl.col("compared_to") == reference) & (pl.col("label") != reference))
        for r in others.iter_rows(named=True):
            sig = r["marker"] or "not significant"
            lines.append(
                f"{r['label']} {r['metric']:<8} {r['mean']:.4f} vs {reference}: p = {r['p_adjusted']:.2g} ({sig})"
            )
    return lines
