"""Benchmark: prepare a full-size Amazon Reviews 2023 category, r2bench beside plain pandas.

Writes ``Video_Games.jsonl.gz`` + ``meta_Video_Games.jsonl.gz`` in the real schema
(``bench/amazon_synth.py``; default: the issue's Video_Games-sized file, 4.63M
reviews of realistic length, about 2.16M in-window interactions and 1.59M
instances after construction), then, in the same run and each in its own child
process:

1. ``r2bench prepare amazon-video-games --raw-dir ...``;
2. the same steps in plain pandas (:func:`pandas_pipeline`): read (``read_json``
   in chunks of 100k lines, keeping the needed columns), window, dedup, title
   filter, users with >= 2 interactions, sequences, seeded split, instances with
   19 uniform negatives drawn outside the user's items and a shuffle, parquet out.

It prints wall time, CPU time (user+sys) and peak RSS of each child (``os.wait4``:
the child's own high-water mark), its peak anonymous RSS (sampled ``RssAnon``:
without the page cache of memory-mapped input, which polars maps and pandas does
not), the ratios, and both pipelines' counts, which must agree (same protocol). ``--pandas-read whole`` reads each file with one
``pd.read_json`` call instead, as the plainest script does: every field of every
line in memory at once (10 GB at ``--scale 0.25`` here; the issue measured 19.9 GB
at full size with its pandas), so run it at full size only on a machine with that
to spare. Chunks are what a careful
pandas user writes, and they make the comparison harder for r2bench, not easier.

    python bench/prepare_amazon.py                      # full size (several minutes)
    python bench/prepare_amazon.py --scale 0.05         # quick look
    python bench/prepare_amazon.py --only r2bench       # skip pandas
    python bench/prepare_amazon.py --scale 0.25 --pandas-read whole

This is a benchmark, not a test; the generated files are cached (``--work``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from amazon_synth import WINDOW_END_MS, WINDOW_START_MS, write_meta, write_reviews  # noqa: E402

REVIEWS, ITEMS, USERS, WINDOW_USERS, IN_WINDOW = 4_630_000, 137_200, 2_800_000, 240_000, 0.49


# ---------------------------------------------------------------- the plain pandas pipeline


def pandas_pipeline(raw: Path, out: Path, seed: int = 0, history_len: int = 20, n_cand: int = 20, whole: bool = False) -> dict:
    """The construction steps as a pandas user writes them; returns the counts.

    ``whole``: read each file with one ``pd.read_json`` call (every field of every
    line in memory at once) instead of in chunks of 100k lines.
    """
    import hashlib
    import html
    import random

    import pandas as pd

    def read(path: Path, cols: list[str]) -> pd.DataFrame:
        if whole:
            return pd.read_json(path, lines=True, dtype=False)[cols]
        parts = [chunk[cols] for chunk in pd.read_json(path, lines=True, chunksize=100_000, dtype=False)]
        return pd.concat(parts, ignore_index=True)

    rev = read(raw / "Video_Games.jsonl.gz", ["user_id", "parent_asin", "timestamp", "rating"])
    rev["timestamp"] = rev["timestamp"].astype("int64")
    # dedup: the earliest review of a (user, item) pair (file order breaks ties), then the window
    rev = rev.sort_values(["user_id", "parent_asin", "timestamp"], kind="stable")
    rev = rev.drop_duplicates(["user_id", "parent_asin"], keep="first")
    rev = rev[(rev["timestamp"] >= WINDOW_START_MS) & (rev["timestamp"] < WINDOW_END_MS)]

    meta = read(raw / "meta_Video_Games.jsonl.gz", ["parent_asin", "title", "average_rating", "rating_number", "store",
                                                   "main_category", "categories", "description"])
    meta = meta[meta["parent_asin"].isin(set(rev["parent_asin"]))].drop_duplicates("parent_asin", keep="first")

    def clean_title(t):  # R2ec's rule
        if not isinstance(t, str):
            return None
        c = " ".join(html.unescape(t).split())
        return c if c and "<span id" not in t and len(c.split()) <= 20 and len(c) > 1 else None

    meta["title"] = meta["title"].map(clean_title)
    meta = meta[meta["title"].notna()].copy()
    meta["description"] = meta["description"].map(lambda d: " ".join(" ".join(d).split()[:100]) if len(d) else None)
    meta["categories"] = meta["categories"].map(lambda c: " > ".join(c) if len(c) else None)
    rev = rev[rev["parent_asin"].isin(set(meta["parent_asin"]))]
    rev = rev[rev.groupby("user_id")["user_id"].transform("size") >= 2]
    rev = rev.sort_values(["user_id", "timestamp"], kind="stable")
    items = meta[meta["parent_asin"].isin(set(rev["parent_asin"]))].sort_values("parent_asin")

    # seeded split of users by a stable hash, 8:1:1
    seqs = rev.groupby("user_id", sort=True).agg(items=("parent_asin", list), ts=("timestamp", list))
    users = list(seqs.index)
    key = {u: int.from_bytes(hashlib.blake2b(f"{seed}\x1fsplit\x1f{u}".encode(), digest_size=8).digest(), "little") for u in users}
    ranked = sorted(users, key=key.__getitem__)
    n_train, n_val = round(0.8 * len(users)), round(0.1 * len(users))
    split = {u: "train" for u in ranked[:n_train]} | {u: "val" for u in ranked[n_train : n_train + n_val]}

    # instances: train users one per position after the first, val/test users the last
    all_items = list(items["parent_asin"])
    rng = random.Random(seed)
    rows = []
    for u, its, ts in zip(users, seqs["items"], seqs["ts"]):
        s = split.get(u, "test")
        mine = set(its)
        for pos in range(1, len(its)) if s == "train" else [len(its) - 1]:
            neg: list[str] = []
            while len(neg) < n_cand - 1:
                c = all_items[rng.randrange(len(all_items))]
                if c not in mine and c not in neg:
                    neg.append(c)
            cand = [its[pos], *neg]
            rng.shuffle(cand)
            lo = max(0, pos - history_len)
            rows.append((s, u, its[lo:pos], ts[lo:pos], its[pos], ts[pos], cand, cand.index(its[pos])))
    inst = pd.DataFrame(rows, columns=["split", "user_id", "history", "history_timestamps", "target", "target_timestamp",
                                       "candidates", "target_index"])
    del rows
    order = {"train": 0, "val": 1, "test": 2}
    inst = inst.sort_values("split", key=lambda c: c.map(order), kind="stable").reset_index(drop=True)
    freq = inst.loc[inst["split"] == "train", "target"].value_counts()
    inst["target_train_freq"] = inst["target"].map(freq).fillna(0).astype("int64")
    out.mkdir(parents=True, exist_ok=True)
    items.to_parquet(out / "items.parquet", index=False)
    rev.to_parquet(out / "interactions.parquet", index=False)
    inst.to_parquet(out / "instances.parquet", index=False)
    return {"users": len(users), "items": len(items), "interactions": len(rev), "instances": len(inst)}


# ---------------------------------------------------------------- running and measuring children


def _sample_anon(pid: int, peak: list[int], stop: threading.Event) -> None:
    """Peak anonymous RSS of ``pid`` (``RssAnon`` in /proc: memory the process itself
    allocated, without the page cache of files it maps, which the kernel can drop)."""
    path = Path(f"/proc/{pid}/status")
    while not stop.is_set():
        try:
            for line in path.read_text().splitlines():
                if line.startswith("RssAnon:"):
                    peak[0] = max(peak[0], int(line.split()[1]) * 1024)
        except OSError:
            return
        time.sleep(0.05)


def run_child(cmd: list[str], env: dict[str, str]) -> dict:
    """Run ``cmd``; wall time, CPU time and peak RSS of that child alone (``wait4``),
    plus its peak anonymous RSS (sampled every 50 ms)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    anon, stop = [0], threading.Event()
    sampler = threading.Thread(target=_sample_anon, args=(proc.pid, anon, stop), daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit status {proc.returncode}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss * 1024, "anon": anon[0]}


def _r2bench_counts(home: Path) -> dict:
    root = home / "benchmarks" / "amazon-video-games"
    m = json.loads((root / (root / "LATEST").read_text().strip() / "manifest.json").read_text())
    st = m["stats"]
    return {"users": st["users"], "items": st["items"], "interactions": st["interactions"], "instances": st["instances"],
            "fingerprint": m["fingerprint"][:12]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the full size (reviews, items, users)")
    ap.add_argument("--in-window", type=float, default=IN_WINDOW, help="share of reviews inside the window")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=("r2bench", "pandas"), default=None)
    ap.add_argument("--pandas-read", choices=("chunks", "whole"), default="chunks",
                    help="pandas reads each file in chunks of 100k lines (default) or whole (10 GB at --scale 0.25)")
    ap.add_argument("--plain", action="store_true", help="uncompressed .jsonl raw files (as the Hugging Face hub has them)")
    ap.add_argument("--work", default=None, help="folder for the generated raw files (kept, reused)")
    ap.add_argument("--pandas-child", nargs=2, metavar=("RAW", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pandas_child:
        counts = pandas_pipeline(Path(args.pandas_child[0]), Path(args.pandas_child[1]), seed=args.seed,
                                 whole=args.pandas_read == "whole")
        (Path(args.pandas_child[1]) / "counts.json").write_text(json.dumps(counts))
        return 0

    n, n_items = int(REVIEWS * args.scale), int(ITEMS * args.scale)
    n_users, w_users = int(USERS * args.scale), int(WINDOW_USERS * args.scale)
    ext = ".jsonl" if args.plain else ".jsonl.gz"
    work = Path(args.work or Path(tempfile.gettempdir()) / f"r2bench-bench-amazon-{n}-{args.in_window}-{args.seed}")
    raw = work / ("raw-plain" if args.plain else "raw")
    raw.mkdir(parents=True, exist_ok=True)
    rpath, mpath = raw / f"Video_Games{ext}", raw / f"meta_Video_Games{ext}"
    if not (rpath.is_file() and mpath.is_file()):
        t = time.perf_counter()
        tmp_r, tmp_m = rpath.with_name("tmp-" + rpath.name), mpath.with_name("tmp-" + mpath.name)
        write_reviews(tmp_r, n, n_items, n_users, args.in_window, w_users, args.seed)
        write_meta(tmp_m, n_items, args.seed)
        tmp_r.replace(rpath)
        tmp_m.replace(mpath)
        print(f"generated raw files in {time.perf_counter() - t:.1f}s")
    mib = 1 << 20
    print(f"raw files: {rpath.name} {rpath.stat().st_size / mib:,.0f} MiB, {mpath.name} {mpath.stat().st_size / mib:,.0f} MiB")

    env = dict(os.environ, R2BENCH_HOME=str(work / "home"), R2BENCH_PROGRESS="0", POLARS_MAX_THREADS=str(os.cpu_count()))
    results: dict[str, dict] = {}
    if args.only in (None, "r2bench"):
        cmd = [sys.executable, "-m", "r2bench", "prepare", "amazon-video-games", "--raw-dir", str(raw)]
        results["r2bench"] = run_child(cmd, env) | _r2bench_counts(work / "home")
    if args.only in (None, "pandas"):
        if args.plain:
            raise SystemExit("the pandas pipeline reads the .jsonl.gz files; drop --plain")
        out = work / "pandas-out"
        cmd = [sys.executable, __file__, "--pandas-child", str(raw), str(out), "--seed", str(args.seed),
               "--pandas-read", args.pandas_read]
        results["pandas"] = run_child(cmd, env) | json.loads((out / "counts.json").read_text())

    print()
    print(f"reviews {n:,}  items {n_items:,}  cpus {os.cpu_count()}  load average now {os.getloadavg()[0]:.1f}  "
          f"pandas reads {args.pandas_read}")
    print(f"{'pipeline':<9} {'wall s':>8} {'CPU s':>8} {'peak RSS MiB':>13} {'peak anon MiB':>14} "
          f"{'users':>9} {'items':>8} {'interactions':>13} {'instances':>10}")
    for name, r in results.items():
        print(f"{name:<9} {r['wall']:>8.1f} {r['cpu']:>8.1f} {r['rss'] / mib:>13,.0f} {r['anon'] / mib:>14,.0f} "
              f"{r['users']:>9,} {r['items']:>8,} {r['interactions']:>13,} {r['instances']:>10,}")
    if len(results) == 2:
        a, b = results["r2bench"], results["pandas"]
        same = all(a[k] == b[k] for k in ("users", "items", "interactions", "instances"))
        print(f"pandas / r2bench: wall {b['wall'] / a['wall']:.1f}x, CPU {b['cpu'] / a['cpu']:.1f}x; r2bench / pandas: "
              f"peak RSS {a['rss'] / b['rss']:.2f}, peak anonymous RSS {a['anon'] / b['anon']:.2f}")
        print(f"counts agree: {same}")
    if "r2bench" in results:
        print(f"r2bench fingerprint {results['r2bench']['fingerprint']}...")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
