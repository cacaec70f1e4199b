from __future__ import annotations

from r2bench.commands.analyze import add_common, command_line, default_out, options_from

HELP = "run methods, every stratified and perturbation analysis, and write the full report (md + html)"
DESCRIPTION = (
    "`r2bench study --dataset movielens-100k --methods random,popularity,item-cooccurrence,sasrec` fits each method "
    "once, makes its original run and the perturbed runs (target position, history shuffling and truncation, "
    "candidate shuffling), runs the cold-start and history-length analyses, and writes report.md / report.html with "
    "one plot per analysis into --out. --limit caps the perturbation runs (use it for LLM methods)."
)


def add_arguments(parser) -> None:
    parser.add_argument("--dataset", default="movielens-100k", help="dataset name or benchmark folder")
    parser.add_argument("--methods", required=True, help="comma-separated registered methods")
    parser.add_argument("--base-limit", type=int, default=None,
                        help="original runs score only the first N test instances (default: all)")
    parser.add_argument("--analyses", default=None,
                        help="comma-separated subset of analyses (default: every one that runs on one dataset, "
                             "i.e. all but transfer)")
    add_common(parser)


def run(args) -> int:
    from pathlib import Path

    from r2bench.analyses.study import run_study

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    analyses = None if args.analyses is None else [a.strip() for a in args.analyses.split(",") if a.strip()]
    out = Path(args.out) if args.out else default_out("study")
    report = run_study(args.dataset, methods, out, limit=args.limit, base_limit=args.base_limit, analyses=analyses,
                       opts=options_from(args), command=command_line(args))
    print(f"report: {report} and {report.with_suffix('.html')}")
    return 0
