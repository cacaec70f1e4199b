from __future__ import annotations

HELP = "compare runs: Table 2 style table with significance markers, CIs and plots"
DESCRIPTION = (
    "Compare RUN... (run folders, run ids, or folders of runs) per dataset: NDCG@1/5/10 in method "
    "groups, best in bold, paired Wilcoxon markers (vs the runner-up, or vs --reference), bootstrap "
    "CIs, a bar chart of NDCG@10; writes report.<ext> files into --out and prints the Markdown table."
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


def run(args) -> int:
    from r2bench.report.build import make_report
    from r2bench.runs import load_runs

    runs = load_runs(args.runs)
    sections = ()
    if args.analyses:
        from r2bench.analyses import report_sections

        sections = report_sections([r.path for r in runs], args.out)
    runs = [r for r in runs if not r.meta.get("perturbation")]  # main table: unperturbed runs only
    rep = make_report(
        runs, formats=args.format or ["md"], out=args.out, reference=args.reference, show_ci=args.ci,
        holm=args.holm, n_boot=args.n_boot, seed=args.seed, plots=not args.no_plots, sections=sections,
    )
    print(rep.markdown)
    for fmt, path in rep.files.items():
        print(f"wrote {path}")
    return 0
