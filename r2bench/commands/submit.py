"""``r2bench submit RUN --name NAME ...``: package a test-split run as a leaderboard entry."""

from __future__ import annotations

HELP = "package a test-split run as a leaderboard entry (leaderboards/<dataset>/entries/<slug>.json)"


def add_arguments(parser) -> None:
    parser.add_argument("run", metavar="RUN", help="run folder (or run id under ./runs)")
    parser.add_argument("--name", required=True, help="method name shown on the board (its slug names the file)")
    parser.add_argument("--description", help="one or two sentences on the method")
    parser.add_argument("--url", help="http(s) link to the paper or code")
    parser.add_argument("--authors", help="who made the method / the submission")
    parser.add_argument("--backbone", help="backbone model, e.g. SmolLM2-135M-Instruct")
    parser.add_argument("--params", help="model size, e.g. 135M, 3B")
    parser.add_argument("--training-data", help="what the method was trained on, e.g. 'benchmark train split'")
    parser.add_argument("--used-val-split", action="store_true",
                        help="the method used the benchmark's val split (early stopping, tuning)")
    parser.add_argument("--root", default="leaderboards", help="leaderboards folder (default: ./leaderboards)")
    parser.add_argument("--replace", action="store_true", help="overwrite an existing entry of the same name")
    parser.add_argument("--no-render", action="store_true", help="do not re-render the boards afterwards")


def run(args) -> int:
    from r2bench.leaderboard.submit import MethodCard, submit_run
    from r2bench.provenance import command_line

    card = MethodCard(
        name=args.name, description=args.description, url=args.url, authors=args.authors,
        backbone=args.backbone, params=args.params, training_data=args.training_data,
        used_val_split=bool(args.used_val_split),
    )
    # the command as it was typed (readable quoting), recorded in the entry
    command = command_line(getattr(args, "argv", None) or ["submit", str(args.run), "--name", args.name])
    path = submit_run(args.run, card, root=args.root, replace=args.replace, command=command,
                      render=not args.no_render)
    print(f"wrote {path}")
    return 0
