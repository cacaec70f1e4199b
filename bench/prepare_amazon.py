"""Benchmark: prepare a full-size Amazon Reviews 2023 category (synthetic, real schema).

Writes ``{Category}.jsonl.gz`` + ``meta_{Category}.jsonl.gz`` of a chosen size
(default: Video_Games scale, 4.6M reviews, 137.2K items, 2.8M users) with the
fields and types of the real files, timestamps spread over 1999-2023 so that a
realistic share falls in the paper's window, then runs
``r2bench prepare amazon-video-games --raw-dir ...`` in a child process and
prints its wall time and peak RSS (getrusage of the waited child; psutil sampling
of the child and its children when psutil is installed), next to the raw sizes.

    python bench/prepare_amazon.py                     # default size
    python bench/prepare_amazon.py --reviews 200000    # quick look

This is a benchmark, not a test; the generated files are cached (``--work``).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl

WINDOW_START_MS = 1_633_046_400_000  # 2021-10-01
WINDOW_END_MS = 1_696_118_400_000  # 2023-10-01
FIRST_MS = 915_148_800_000  # 1999-01-01
WORDS = "great game fun controller works fine graphics story kids love price fast shipping broke after week " \
        "recommend sound battery charge online multiplayer level boss easy hard classic remaster".split()


def _texts(rng: np.random.Generator, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS, size=int(k))) for k in rng.integers(4, 90, size=n)]


def write_reviews(path: Path, n: int, n_items: int, n_users: int, in_window: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pool = pl.Series(_texts(rng, 2000))
    titles = pl.Series(["Five Stars", "Great", "Works", "Not as described", "Love it", "Meh"])
    chunk = 250_000
    with gzip.open(path, "wb", compresslevel=1) as gz:
        for lo in range(0, n, chunk):
            m = min(chunk, n - lo)
            user = (n_users * rng.random(m) ** 2.2).astype(np.int64)  # a heavy tail of active users
            item = (n_items * rng.random(m) ** 1.8).astype(np.int64)  # popular items
            inside = rng.random(m) < in_window
            before = WINDOW_START_MS - ((WINDOW_START_MS - FIRST_MS) * rng.random(m) ** 1.5).astype(np.int64)
            within = rng.integers(WINDOW_START_MS, WINDOW_END_MS, size=m)
            ts = np.where(inside, within, before)
            df = pl.DataFrame(
                {
                    "rating": rng.integers(1, 6, size=m).astype(np.float64),
                    "title": titles.gather(rng.integers(0, len(titles), size=m)),
                    "text": pool.gather(rng.integers(0, len(pool), size=m)),
                    "images": pl.Series([[]] * m, dtype=pl.List(pl.String)),
                    "asin": pl.Series(item).cast(pl.String).str.zfill(9).str.replace(r"^", "A") + "1",
                    "parent_asin": pl.Series(item).cast(pl.String).str.zfill(9).str.replace(r"^", "B"),
                    "user_id": pl.Series(user).cast(pl.String).str.zfill(26).str.replace(r"^", "AG"),
                    "timestamp": ts,
                    "helpful_vote": rng.integers(0, 5, size=m),
                    "verified_purchase": rng.random(m) < 0.8,
                }
            )
            buf = io.BytesIO()
            df.write_ndjson(buf)
            gz.write(buf.getvalue())


def write_meta(path: Path, n_items: int, seed: int) -> None:
    rng = np.random.default_rng(seed + 1)
    descs = _texts(rng, 500)
    with gzip.open(path, "wt", compresslevel=1, encoding="utf-8") as f:
        for i in range(n_items):
            title = f"Video Game Title {i} &amp; Bundle"
            if i % 50 == 3:
                title = ""
            elif i % 50 == 7:
                title = " ".join(["long"] * 30)
            rec = {
                "main_category": "Video Games",
                "title": title,
                "average_rating": round(float(rng.uniform(1, 5)), 1),
                "rating_number": int(rng.integers(0, 20000)),
                "features": ["Feature one", "Feature two"],
                "description": [descs[i % 500], descs[(i * 7) % 500]] if i % 5 else [],
                "price": [19.99, None, "None", 59.99][i % 4],
                "images": [{"thumb": "https://example.invalid/t.jpg", "large": "https://example.invalid/l.jpg", "variant": "MAIN"}],
                "videos": [],
                "store": f"Studio {i % 300}",
                "categories": ["Video Games", "PlayStation 4", "Games"] if i % 3 else [],
                "details": {"Release date": "2019"} if i % 2 else json.dumps({"Release date": "2019"}),
                "parent_asin": f"B{i:09d}",
                "bought_together": None,
            }
            f.write(json.dumps(rec) + "\n")


def _uncompressed_size(path: Path) -> int:
    total = 0
    with gzip.open(path, "rb") as f:
        while block := f.read(1 << 24):
            total += len(block)
    return total


def _sample_rss(pid: int, peak: list[int], stop: threading.Event) -> None:
    try:
        import psutil
    except ImportError:
        return
    try:
        proc = psutil.Process(pid)
        while not stop.is_set():
            rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
            peak[0] = max(peak[0], rss)
            time.sleep(0.2)
    except psutil.Error:
        pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reviews", type=int, default=4_600_000)
    ap.add_argument("--items", type=int, default=137_200)
    ap.add_argument("--users", type=int, default=2_800_000)
    ap.add_argument("--in-window", type=float, default=0.15, help="share of reviews inside the window")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=None, help="folder for the generated raw files (kept, reused)")
    args = ap.parse_args()

    work = Path(args.work or Path(tempfile.gettempdir()) / f"r2bench-bench-amazon-{args.reviews}-{args.items}-{args.seed}")
    raw = work / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rpath, mpath = raw / "Video_Games.jsonl.gz", raw / "meta_Video_Games.jsonl.gz"
    if not (rpath.is_file() and mpath.is_file()):
        t = time.perf_counter()
        write_reviews(rpath.with_suffix(".tmp"), args.reviews, args.items, args.users, args.in_window, args.seed)
        write_meta(mpath.with_suffix(".tmp"), args.items, args.seed)
        rpath.with_suffix(".tmp").replace(rpath)
        mpath.with_suffix(".tmp").replace(mpath)
        print(f"generated raw files in {time.perf_counter() - t:.1f}s")
    gz_bytes = rpath.stat().st_size + mpath.stat().st_size
    raw_bytes = _uncompressed_size(rpath) + _uncompressed_size(mpath)

    env = dict(os.environ, R2BENCH_HOME=str(work / "home"), R2BENCH_PROGRESS="0")
    cmd = [sys.executable, "-m", "r2bench", "prepare", "amazon-video-games", "--raw-dir", str(raw), "--no-card"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    peak, stop = [0], threading.Event()
    sampler = threading.Thread(target=_sample_rss, args=(proc.pid, peak, stop), daemon=True)
    sampler.start()
    rc = proc.wait()
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    if rc != 0:
        print(f"prepare failed with exit status {rc}")
        return rc
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    maxrss = usage.ru_maxrss * 1024  # Linux: KiB
    cpu = usage.ru_utime + usage.ru_stime
    peak_b = max(maxrss, peak[0])
    mib = 1 << 20
    print()
    print(f"command: {' '.join(cmd[1:])}")
    print(f"reviews {args.reviews:,}  items {args.items:,}  users (max) {args.users:,}  cpus {os.cpu_count()}")
    print(f"raw files: {gz_bytes / mib:,.0f} MiB gzip, {raw_bytes / mib:,.0f} MiB uncompressed")
    print(f"prepare wall time: {wall:.1f} s, CPU time (user+sys): {cpu:.1f} s, load average now {os.getloadavg()[0]:.1f}")
    print(f"prepare peak RSS: {peak_b / mib:,.0f} MiB (getrusage {maxrss / mib:,.0f} MiB, psutil {peak[0] / mib:,.0f} MiB)")
    print(f"peak RSS / uncompressed raw: {peak_b / raw_bytes:.2f}   peak RSS / gzip raw: {peak_b / gz_bytes:.2f}")
    print(f"throughput: {args.reviews / wall:,.0f} reviews/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
