"""What fitting once saves in the perturbation analyses.

    python bench/analyses_fit_once.py [--dataset movielens-100k] [--methods popularity,item-cooccurrence]

For each method, makes the same perturbed runs (target at positions 1/10/20, three
history shuffles, one candidate shuffle: 7 runs) twice:

1. the analyses' way: ``MethodRunner`` fits once and every run reuses the fitted model;
2. naively: one ``run_method(name, perturb=...)`` per perturbation, each fitting again;

checks that both give identical per-instance metrics, and prints the seconds and the
ratio naive / fit-once (after one warm-up run per method, so imports and table loads
count for neither).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import polars as pl


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="movielens-100k")
    ap.add_argument("--methods", default="popularity,item-cooccurrence")
    args = ap.parse_args()
    os.environ.setdefault("R2BENCH_PROGRESS", "0")

    from r2bench.analyses import perturb as P
    from r2bench.analyses.execute import MethodRunner
    from r2bench.data.benchmark import load_benchmark
    from r2bench.pipeline import run_method

    bench = load_benchmark(args.dataset)
    specs = ([P.target_position_spec(p) for p in (1, 10, 20)] + [P.history_shuffle_spec(s) for s in range(3)]
             + [P.candidate_shuffle_spec(0)])
    print(f"{bench.describe()}; {bench.split('test').height} test instances; {len(specs)} perturbed runs per method")
    print(f"{'method':20s} {'fit-once s':>10s} {'naive s':>9s} {'naive/fit-once':>15s} {'identical':>9s}")
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods.split(","):
            # warm-up: imports, benchmark tables and caches load before either timing
            run_method(method, bench, limit=1, out=Path(tmp) / "warm")
            t0 = time.perf_counter()
            runner = MethodRunner(method, bench, out=Path(tmp) / "once")
            once = [runner.perturbed(s) for s in specs]
            t_once = time.perf_counter() - t0
            t0 = time.perf_counter()
            naive = [run_method(method, bench, out=Path(tmp) / "naive", perturb=P.perturbation_fn(s), perturbation=s)
                     for s in specs]
            t_naive = time.perf_counter() - t0
            same = all(pl.read_parquet(a / "metrics.parquet").equals(pl.read_parquet(b / "metrics.parquet"))
                       for a, b in zip(once, naive))
            print(f"{method:20s} {t_once:10.2f} {t_naive:9.2f} {t_naive / t_once:15.2f} {str(same):>9s}")


if __name__ == "__main__":
    main()
