"""Benchmark: memory of r2bench's native NDJSON scan as the gzip file grows.

Reads the reviews file of ``bench/prepare_amazon.py`` (run that first) with
``r2bench.data.jsonl.read_jsonl`` (4 review fields, a batch filter that keeps
nothing, so only the scan itself is measured), then the same bytes twice over in one
file (a 2x concatenation: a multi-member gzip, as ``cat a.gz b.gz`` makes), each in
a child process. Prints wall time, peak RSS and peak anonymous RSS (``RssAnon``,
sampled every 50 ms). polars memory-maps the compressed input, so its page cache
shows in RSS and grows with the file; the memory the scan allocates does not.

    python bench/ndjson_scan.py                      # the full-size file
    python bench/ndjson_scan.py --reviews PATH       # any reviews .jsonl(.gz)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prepare_amazon import run_child  # noqa: E402

DEFAULT = Path(tempfile.gettempdir()) / "r2bench-bench-amazon-4630000-0.49-0" / "raw" / "Video_Games.jsonl.gz"


def child(path: str, out: str) -> None:
    from r2bench.data.jsonl import read_jsonl
    from r2bench.data.sources.amazon2023 import REVIEW_REQUIRED, REVIEW_SCHEMA

    r = read_jsonl(path, REVIEW_SCHEMA, REVIEW_REQUIRED, block_filter=lambda df: df.head(0))
    Path(out).write_text(json.dumps({"records": r.records, "fast": r.fast}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reviews", type=Path, default=DEFAULT)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return 0
    if not args.reviews.is_file():
        raise SystemExit(f"{args.reviews}: not found; run `python bench/prepare_amazon.py --only r2bench` first")
    double = args.reviews.with_name("x2-" + args.reviews.name)
    if not double.is_file():
        with open(double.with_suffix(".tmp"), "wb") as out:
            for _ in range(2):
                with open(args.reviews, "rb") as f:
                    while block := f.read(1 << 24):
                        out.write(block)
        double.with_suffix(".tmp").replace(double)
    env = dict(os.environ, R2BENCH_PROGRESS="0")
    mib = 1 << 20
    print(f"{'file':<34} {'MiB':>7} {'records':>11} {'wall s':>7} {'peak RSS MiB':>13} {'peak anon MiB':>14}")
    info_file = double.with_name("scan-info.json")
    for path in (args.reviews, double):
        r = run_child([sys.executable, __file__, "--child", str(path), str(info_file)], env)
        info = json.loads(info_file.read_text())
        assert info["fast"], "the native scan was not used"
        print(f"{path.name:<34} {path.stat().st_size / mib:>7,.0f} {info['records']:>11,} {r['wall']:>7.1f} "
              f"{r['rss'] / mib:>13,.0f} {r['anon'] / mib:>14,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
