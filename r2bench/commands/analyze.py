from __future__ import annotations

from r2bench.analyses.registry import ANALYSES

# built-in names only: reading installed packages' entry points at start-up would slow down every command
HELP = "analyses: " + ", ".join(ANALYSES.in_order(entry_points=False))
DESCRIPTION = (
    "Run one analysis. From existing runs: `r2bench analyze cold-start --runs runs/A runs/B` (folders of runs work "
    "too). Or let r2bench make the runs it needs: `r2bench analyze position --method popularity,sasrec --dataset "
    "movielens-100k --limit 200` (each method is fitted once and scores every perturbed copy). Transfer takes several "
    "datasets: `r2bench analyze transfer --method M --dataset A --dataset B`. Writes tables (md/csv/tex), one PNG and "
    "<analysis>.md into --out."
)


def _ints(text: str) -> tuple[int, ...]:
    import argparse

    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_common(parser) -> None:
    """Options shared with `r2bench study`."""
    parser.add_argument("--limit", type=int, default=None, help="perturbation runs score only the first N test instances")
    parser.add_argument("--seed", type=int, default=0, help="seed of the methods and of every perturbation (default 0)")
    parser.add_argument("--out", default=None, help="output folder (default reports/<name>-<UTC time>)")
    parser.add_argument("--metric", default="ndcg@10", help="per-instance metric to aggregate (default ndcg@10)")
    parser.add_argument("--reference", default=None, help="cold-start: method whose improvement over the others is shown "
                                                          "(default: the best overall)")
    parser.add_argument("--bins", type=int, default=4, help="cold-start: number of equal-count bins (default 4)")
    parser.add_argument("--fixed-edges", type=_ints, default=(0, 5), help="cold-start fixed groups (default 0,5: never "
                                                                         "seen / 1-5 / more)")
    parser.add_argument("--length-edges", type=_ints, default=(5, 10, 15, 20),
                        help="history-length group upper bounds (default 5,10,15,20)")
    parser.add_argument("--positions", type=_ints, default=(1, 10, 20), help="target positions, 1-based (default 1,10,20)")
    parser.add_argument("--shuffles", type=int, default=5, help="history permutations (default 5)")
    parser.add_argument("--ks", type=_ints, default=(1, 5, 10, 15, 20), help="truncation lengths (default 1,5,10,15,20)")
    parser.add_argument("--sample", type=int, default=100, help="truncation: instances sampled among full histories "
                                                                "(default 100; 0 = all of them)")
    parser.add_argument("--full-length", type=int, default=None,
                        help="truncation: what counts as a full history (default: the benchmark's history length)")
    parser.add_argument("--candidate-shuffles", type=int, default=1, help="candidate permutations (default 1)")


def options_from(args):
    from r2bench.analyses.base import Options

    return Options(metric=args.metric, reference=args.reference, n_bins=args.bins, fixed_edges=tuple(args.fixed_edges),
                   length_edges=tuple(args.length_edges), positions=tuple(args.positions), n_shuffles=args.shuffles,
                   ks=tuple(args.ks), sample_n=args.sample or None, full_length=args.full_length,
                   n_candidate_shuffles=args.candidate_shuffles, seed=args.seed)


def default_out(name: str):
    from datetime import datetime, timezone
    from pathlib import Path

    # under reports/, which the repository's .gitignore already ignores
    return Path("reports") / f"{name}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"


def command_line(args) -> str:
    """The command as typed (readable quoting, :func:`r2bench.provenance.command_line`)."""
    from r2bench.provenance import command_line as line

    return line(getattr(args, "argv", []))


def add_selection(parser) -> None:
    """--latest / --method / --label: which of the runs given are shown (report and analyze)."""
    parser.add_argument("--latest", action="store_true",
                        help="only the newest run per method and settings (config, seed, label, instance set)")
    parser.add_argument("--label", action="append", default=[], metavar="L",
                        help="only runs with this label (their --label, or the method plus the config keys that "
                             "differ from its defaults, e.g. 'item-cooccurrence window=3'; repeatable or comma-separated)")


def add_arguments(parser) -> None:
    parser.add_argument("analysis", help="which analysis: " + ", ".join(ANALYSES.in_order(entry_points=False))
                        + " (or one another package registers)")
    parser.add_argument("--runs", nargs="+", default=None, metavar="RUN",
                        help="existing run folders (or folders of runs) to analyse instead of making new runs; "
                             "they are grouped by benchmark, split and set of scored instances")
    parser.add_argument("--method", action="append", default=[], metavar="M",
                        help="method(s) to run (repeatable or comma-separated); with --runs: only runs of these methods")
    parser.add_argument("--dataset", action="append", default=[], metavar="D",
                        help="dataset name or benchmark folder (repeat for transfer)")
    parser.add_argument("--base-limit", type=int, default=None,
                        help="original runs (stratified analyses) score only the first N instances")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="method config override (applies to every method given)")
    parser.add_argument("--config", default=None, metavar="FILE", help="YAML file of method config values")
    add_selection(parser)
    add_common(parser)


def run(args) -> int:
    import sys
    from pathlib import Path

    from r2bench.analyses import suite
    from r2bench.analyses.registry import get_analysis
    from r2bench.atomic import write_text
    from r2bench.config import parse_set_args
    from r2bench.errors import R2BenchError

    analysis = get_analysis(args.analysis)
    opts = options_from(args)
    out = Path(args.out) if args.out else default_out(analysis.name)
    methods = [m.strip() for item in args.method for m in item.split(",") if m.strip()]
    skipped: list[dict] = []
    if args.runs:
        if args.dataset:
            raise R2BenchError("give either --runs (analyse existing runs) or --dataset (make runs), not both")
        paths, only = args.runs, methods
    else:
        if not methods or not args.dataset:
            raise R2BenchError(f"analyze {analysis.name}: give --runs RUN..., or --method M and --dataset D")
        if analysis.several_datasets and len(args.dataset) < 2:
            raise R2BenchError(f"analyze {analysis.name} needs at least two --dataset")
        if not analysis.several_datasets and len(args.dataset) > 1:
            raise R2BenchError(f"analyze {analysis.name} takes one --dataset")
        paths, skipped = suite.make_runs(analysis, methods, args.dataset, opts, out / "runs", args.limit,
                                         args.base_limit, parse_set_args(args.set), args.config, command_line(args))
        only = []
    sel = suite.select(paths, latest=args.latest, methods=only, labels=args.label)
    summary = sel.summary()
    print(summary + "\n")
    results = suite.analyze_selection(analysis.name, sel, out, opts, skipped=skipped)
    for res in results:
        res.write(res.folder or out)
    md = "\n\n".join([summary] + [res.markdown(image_dir=out) for res in results])
    write_text(out / f"{analysis.name}.md", md + "\n")
    for res in results:
        print(res.markdown(image_dir=out))
        for note in res.notes:
            if note.startswith("VIOLATION"):
                print(f"r2bench analyze: warning: {note}", file=sys.stderr)
    figures = [str(res.figure) for res in results if res.figure]
    print(f"written: {out}/{analysis.name}.md" + (f", {', '.join(figures)}" if figures else ""))
    return 0
