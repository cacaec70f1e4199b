from __future__ import annotations

HELP = "validate a run against its benchmark and write its per-instance metrics"
DESCRIPTION = (
    "Validate RUN (fingerprint, every instance of the split once, exactly its candidates, "
    "finite scores), write RUN/metrics.parquet and print the means with bootstrap 95% CIs."
)


def add_arguments(parser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folder(s) or run id(s) under ./runs")
    parser.add_argument("--benchmark", default=None,
                        help="benchmark folder to evaluate against (default: the one recorded in run.json)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap CIs (default 0)")


def run(args) -> int:
    from r2bench.data.benchmark import load_benchmark
    from r2bench.eval.evaluate import evaluate_run, summary_table
    from r2bench.runs import load_run

    bench = load_benchmark(args.benchmark) if args.benchmark else None
    for path in args.runs:
        run_ = load_run(path)
        metrics = evaluate_run(run_.path, benchmark=bench)
        print(summary_table(metrics, seed=args.seed,
                            title=f"{run_.label} on {run_.dataset} [{run_.split}] -> {run_.path / 'metrics.parquet'}"))
    return 0
