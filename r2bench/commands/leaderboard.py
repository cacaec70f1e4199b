"""``r2bench leaderboard validate|render|init``: check and publish the boards."""

from __future__ import annotations

HELP = "validate leaderboard entries (CI) and render the boards"


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    v = sub.add_parser("validate", help="check every entry (schema, fingerprint, coverage, recomputed metrics)")
    v.add_argument("dir", nargs="?", default="leaderboards", metavar="DIR",
                   help="leaderboards folder or one board folder (default: ./leaderboards)")
    r = sub.add_parser("render", help="write <dataset>/README.md, <dataset>/index.html and the overview")
    r.add_argument("--root", default="leaderboards", help="leaderboards folder (default: ./leaderboards)")
    r.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if any README.md is not what rendering would produce (CI)")
    i = sub.add_parser("init", help="create a board from a prepared benchmark, or an empty placeholder")
    i.add_argument("dataset", help="dataset name (or benchmark folder with --benchmark)")
    i.add_argument("--root", default="leaderboards")
    i.add_argument("--title", default="", help="display title")
    i.add_argument("--placeholder", action="store_true",
                   help="an empty board without a canonical benchmark (the first submission fixes it)")
    i.add_argument("--fingerprint", help="use this prepared fingerprint instead of the latest")
    i.add_argument("--force", action="store_true", help="overwrite an existing board.json")


def run(args) -> int:
    import sys
    from pathlib import Path

    if args.action == "validate":
        from r2bench.leaderboard.board import ENTRIES_DIR, board_dirs
        from r2bench.leaderboard.validate import validate_tree

        folders = board_dirs(args.dir)
        n_entries = sum(len(list((folder / ENTRIES_DIR).glob("*.json"))) for folder in folders)
        problems = validate_tree(args.dir)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print(f"{len(problems)} problem(s) in {len(folders)} board(s)", file=sys.stderr)
            return 1
        print(f"ok: {n_entries} entries in {len(folders)} board(s) valid")
        return 0

    if args.action == "render":
        from r2bench.leaderboard.publish import render_all

        problems = render_all(Path(args.root), check=args.check)
        stale = [p for p in problems if p.endswith("run `r2bench leaderboard render`")]
        for line in problems:
            print(line if line in stale else f"skipped (invalid): {line}", file=sys.stderr)
        if args.check:
            if stale:
                return 1
            print(f"up to date: {args.root}")
            return 0
        print(f"rendered {args.root}")
        return 0

    from r2bench.errors import R2BenchError
    from r2bench.leaderboard.board import BOARD_FILE, board_dict_from_benchmark, placeholder_board_dict, write_board
    from r2bench.leaderboard.safety import check_slug

    folder = Path(args.root) / args.dataset if check_slug(args.dataset) is None else None
    if args.placeholder:
        if folder is None:
            raise R2BenchError(f"dataset name {args.dataset!r} is not usable as a board folder")
        content = placeholder_board_dict(args.dataset, args.title)
    else:
        from r2bench.data.benchmark import load_benchmark

        bench = load_benchmark(args.dataset, fingerprint=args.fingerprint)
        folder = Path(args.root) / bench.name
        content = board_dict_from_benchmark(bench, args.title)
    if (folder / BOARD_FILE).exists() and not args.force:
        raise R2BenchError(f"{folder / BOARD_FILE} exists; pass --force to overwrite it")
    print(f"wrote {write_board(folder, content)}")
    return 0
