from __future__ import annotations

from r2bench.commands.analyze import add_selection

HELP = "compare runs: Table 2 style table with significance markers, CIs and plots"
DESCRIPTION = (
    "Compare RUN... (run folders, run ids, or folders of runs): one comparison per benchmark, split and set "
    "of scored instances (--limit runs form their own), NDCG@1/5/10 in method groups, best in bold, paired "
    "Wilcoxon markers (vs the runner-up, or vs --reference), bootstrap CIs, a bar chart of NDCG@10; runs with "
    "identical scores shown once; writes report.<ext> files into --out and prints what went where and the tables."
)


def add_arguments(parser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders, run ids, or folders of runs")
    parser.add_argument("--format", action="append", default=None, choices=("md", "latex", "html", "csv"),
                        help="output format (repeatable; default md)")
    parser.add_argument("--out", default="report", help="output folder (default ./report)")
    parser.add_argument("--reference", default=None,
                        help="test every run against this method label instead of the best against the runner-up")
    parser.add_argument("--ci", action="store_true", help="show bootstrap 95%% CIs in the table")
    parser.add_argument("--holm", action="store_true", help="Holm-correct the p-values across metrics and datasets")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--analyses", action="store_true",
                        help="add the analyses these runs support (cold-start bins, history length, position bias...)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots (no matplotlib needed)")
    parser.add_argument("--method", action="append", default=[], metavar="M",
                        help="only runs of these methods (repeatable or comma-separated)")
    add_selection(parser)


def run(args) -> int:
    from r2bench.report.build import make_report

    if args.analyses:
        from r2bench.analyses.suite import report_sections, select
    else:
        from r2bench.report.select import select_runs as select
    sel = select(args.runs, latest=args.latest, methods=args.method, labels=args.label)
    sections = report_sections(sel, args.out) if args.analyses else ()
    rep = make_report(
        sel, formats=args.format or ["md"], out=args.out, reference=args.reference, show_ci=args.ci,
        holm=args.holm, n_boot=args.n_boot, seed=args.seed, plots=not args.no_plots, sections=sections,
    )
    print(rep.markdown)
    for fmt, path in rep.files.items():
        print(f"wrote {path}")
    return 0
