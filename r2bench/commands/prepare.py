"""``r2bench prepare DATASET``: build a frozen benchmark (see r2bench.data.prepare)."""

from __future__ import annotations

HELP = "build a frozen benchmark from a registered dataset (movielens-100k, amazon-*, custom)"
DESCRIPTION = (
    "Build a frozen, fingerprinted benchmark under $R2BENCH_HOME/benchmarks/<dataset>/<fingerprint>/. "
    "Every construction parameter defaults to the paper's protocol and is recorded in the manifest."
)


def _time_ms(value: str) -> int | None:
    """A window bound: YYYY-MM-DD (UTC midnight), integer ms, or 'none'."""
    import argparse
    from datetime import datetime, timezone

    if value.lower() in ("none", "null", ""):
        return None
    if value.isdigit():
        return int(value)
    try:
        d = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, milliseconds or 'none', got {value!r}") from None
    return int(d.timestamp() * 1000)


def _ratios(value: str) -> tuple[float, float, float]:
    import argparse

    parts = value.replace(":", ",").split(",")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        nums = []
    if len(nums) != 3 or sum(nums) <= 0:
        raise argparse.ArgumentTypeError(f"expected three numbers like 8:1:1, got {value!r}")
    total = sum(nums)
    return tuple(n / total for n in nums)  # type: ignore[return-value]


def add_arguments(parser) -> None:
    import argparse

    parser.add_argument("dataset", help="registered dataset name (see `r2bench datasets`)")
    g = parser.add_argument_group("construction (defaults = the paper's protocol)")
    g.add_argument("--seed", type=int, default=None, help="global seed for split, negatives, shuffles (default 0)")
    g.add_argument("--limit-users", type=int, default=None, metavar="N", help="keep a seeded subset of N users (quick look)")
    g.add_argument("--history-len", type=int, default=None, metavar="L", help="max history length (default 20)")
    g.add_argument("--n-candidates", type=int, default=None, metavar="K", help="candidates per instance (default 20)")
    g.add_argument("--min-interactions", type=int, default=None, help="drop users with fewer (default 2)")
    g.add_argument("--split-ratios", type=_ratios, default=None, metavar="A:B:C", help="train:val:test users (default 8:1:1)")
    g.add_argument("--window-start", type=_time_ms, default=argparse.SUPPRESS, metavar="DATE", help="YYYY-MM-DD, ms or none")
    g.add_argument("--window-end", type=_time_ms, default=argparse.SUPPRESS, metavar="DATE", help="exclusive; YYYY-MM-DD, ms or none")
    g.add_argument("--title-rule", choices=("nonempty", "r2ec"), default=None, help="which titles are usable")
    g.add_argument("--max-title-words", type=int, default=None, help="r2ec rule: longest title kept (default 20)")
    s = parser.add_argument_group("source")
    s.add_argument("--raw-dir", default=None, help="read raw files from DIR instead of downloading")
    s.add_argument("--base-url", default=None, help="Amazon mirror base URL (or env R2BENCH_AMAZON_BASE_URL)")
    s.add_argument("--spec", dest="spec_file", default=None, metavar="FILE", help="custom dataset YAML spec")
    s.add_argument("--skip-bad-lines", action="store_true", help="skip malformed raw lines (counted in the manifest) instead of failing")
    s.add_argument("--description-words", type=int, default=None, help="Amazon: cut descriptions to N words (default 100)")


def run(args) -> int:
    from r2bench.data.prepare import prepare

    overrides = {
        "seed": args.seed, "limit_users": args.limit_users, "history_len": args.history_len,
        "n_candidates": args.n_candidates, "min_interactions": args.min_interactions,
        "split_ratios": args.split_ratios, "title_rule": args.title_rule, "max_title_words": args.max_title_words,
    }
    # an explicit "none" clears a source's default window: keep it distinct from "not given"
    for attr in ("window_start", "window_end"):
        if hasattr(args, attr):
            value = getattr(args, attr)
            overrides[f"{attr}_ms"] = "none" if value is None else value
    bench = prepare(
        args.dataset, raw_dir=args.raw_dir, base_url=args.base_url, spec_file=args.spec_file,
        skip_bad_lines=args.skip_bad_lines, description_words=args.description_words, **overrides,
    )
    st = bench.manifest["stats"]
    print(f"prepared {bench.name}")
    print(f"  fingerprint  {bench.fingerprint}")
    print(f"  path         {bench.path}")
    print(f"  card         {bench.path / 'card.md'}  (r2bench card {bench.name})")
    print(f"  users {st['users']:,}  items {st['items']:,}  interactions {st['interactions']:,}")
    for s in ("train", "val", "test"):
        v = st["splits"][s]
        print(f"  {s:<5} users {v['users']:,}  instances {v['instances']:,}")
    return 0
