from __future__ import annotations

HELP = "fit a method, score a split and write a run (then evaluate it)"
DESCRIPTION = (
    "Fit METHOD on the benchmark's train instances, score a split and write runs/<run-id>/ "
    "(scores.parquet, run.json, metrics.parquet). Config keys can be set with --set key=value, "
    "--config FILE.yaml, or directly as --key=value after the known options (e.g. --epochs=3)."
)
ACCEPTS_CONFIG_OPTIONS = True  # unknown --key=value options are config overrides (see r2bench.cli)


def add_arguments(parser) -> None:
    parser.add_argument("--method", required=True, help="a registered method (see `r2bench methods`)")
    parser.add_argument("--dataset", default="movielens-100k",
                        help="dataset name (its latest prepare) or benchmark folder (default movielens-100k)")
    parser.add_argument("--split", default="test", choices=("test", "val"), help="split to score (default test)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N instances by instance_id")
    parser.add_argument("--seed", type=int, default=0, help="seed of the method (default 0)")
    parser.add_argument("--out", default=None, help="folder under which <run-id>/ is created (default ./runs)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    parser.add_argument("--config", default=None, metavar="FILE", help="YAML file of config values")
    parser.add_argument("--train-on", default=None, metavar="DATASET",
                        help="fit on this dataset and score --dataset (cross-dataset transfer)")
    parser.add_argument("--label", default=None, help="display name of the run in reports (default: the method)")
    parser.add_argument("--no-evaluate", action="store_true", help="write the run without evaluating it")
    parser.allow_abbrev = False  # --s=1 must not silently become --seed or --set


def run(args) -> int:
    from r2bench.config import parse_set_args
    from r2bench.eval.evaluate import summary_table
    from r2bench.pipeline import run_method
    from r2bench.runs import load_run

    overrides = parse_set_args(list(args.set) + list(getattr(args, "option_overrides", []) or []))
    from r2bench.provenance import command_line

    command = command_line(args.argv)
    path = run_method(
        args.method, args.dataset, split=args.split, limit=args.limit, seed=args.seed,
        overrides=overrides, config_file=args.config, out=args.out, train_on=args.train_on,
        evaluate=not args.no_evaluate, command=command, label=args.label,
    )
    r = load_run(path)
    t = r.meta["timings"]
    print(f"run {r.run_id}: {r.method} on {r.dataset} [{r.fingerprint[:12]}] {r.split}, "
          f"{r.meta['n_instances']} instances, fit {t['fit_s']:.1f}s, score {t['score_s']:.1f}s")
    if not args.no_evaluate:
        print(summary_table(r.metrics))
    print(path)
    return 0
