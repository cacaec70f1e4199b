from __future__ import annotations

HELP = "prepare movielens-100k, run the sanity baselines and print the comparison table"
DESCRIPTION = (
    "Prepare a dataset (default movielens-100k, offline), run random, popularity and item-cooccurrence "
    "on its test split, and print the Table 2 style comparison with bootstrap CIs and Wilcoxon markers "
    "against random, plus a check that random matches its analytic expectation."
)

SANITY = ("random", "popularity", "item-cooccurrence")


def add_arguments(parser) -> None:
    parser.add_argument("--dataset", default="movielens-100k", help="dataset to prepare (default movielens-100k)")
    parser.add_argument("--methods", nargs="+", default=list(SANITY), help="methods to run (default: the sanity baselines)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the methods and the bootstrap (default 0)")
    parser.add_argument("--out", default=None, help="folder for the runs (default ./runs)")
    parser.add_argument("--report-out", default="report/quickstart", help="folder for the report (default report/quickstart)")
    parser.add_argument("--format", action="append", default=None, choices=("md", "latex", "html", "csv"),
                        help="report format(s) to write (repeatable; default md and html)")


def run(args) -> int:
    from r2bench.data.prepare import prepare
    from r2bench.extras import available
    from r2bench.pipeline import run_method
    from r2bench.report.build import make_report
    from r2bench.report.quickstart import random_check_lines
    from r2bench.runs import load_run

    bench = prepare(args.dataset)
    print(f"benchmark: {bench.describe()} -> {bench.path}")
    runs = []
    for m in args.methods:
        path = run_method(m, bench, split="test", seed=args.seed, out=args.out,
                          command=f"r2bench quickstart (method {m})")
        r = load_run(path)
        runs.append(r)
        print(f"  {m:<18} {r.meta['n_instances']} test instances, fit {r.meta['timings']['fit_s']:.1f}s -> {path}")
    reference = "random" if "random" in args.methods else None
    rep = make_report(runs, formats=args.format or ["md", "html"], out=args.report_out, reference=reference,
                      show_ci=True, seed=args.seed, plots=available("matplotlib"), title="r2bench quickstart")
    print()
    print(rep.markdown.split("\n## ")[0].strip())
    print()
    for line in random_check_lines(rep.compare, reference):
        print(line)
    for fmt, path in rep.files.items():
        print(f"wrote {path}")
    return 0
