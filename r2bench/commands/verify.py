"""``r2bench verify [DATASET|PATH]``: check a prepared benchmark against its manifest."""

from __future__ import annotations

HELP = "recompute a prepared benchmark's content fingerprint and compare it with its manifest"
DESCRIPTION = (
    "Re-read items, interactions and instances of a prepared benchmark, recompute each table's content digest "
    "and the fingerprint (r2bench.data.fingerprint: rows, not parquet bytes), and compare them with manifest.json. "
    "Exit 0 when they match, 1 naming the table that differs."
)


def add_arguments(parser) -> None:
    parser.add_argument("benchmark", nargs="?", default="movielens-100k",
                        help="dataset name (its latest prepare) or a benchmark folder (default movielens-100k)")
    parser.add_argument("--fingerprint", default=None, metavar="PREFIX",
                        help="with a dataset name: the prepared benchmark with this fingerprint (prefix)")


def run(args) -> int:
    import sys

    from r2bench.data.benchmark import resolve_benchmark_path
    from r2bench.data.store import verify_benchmark
    from r2bench.errors import R2BenchError

    folder = resolve_benchmark_path(args.benchmark, args.fingerprint)
    try:
        manifest = verify_benchmark(folder)
    except R2BenchError as exc:
        print(f"r2bench verify: MISMATCH: {exc}", file=sys.stderr)
        return 1
    print(f"ok: {manifest['dataset']} [{manifest['fingerprint'][:12]}] at {folder}")
    for name, digest in sorted(manifest["tables"].items()):
        print(f"  {name:<13} {digest[:16]}")
    return 0
