"""How long CI's `r2bench leaderboard validate` and `render` take as boards grow.

Builds synthetic boards (no prepared data needed: board.json + entries written
directly) of N test instances x 20 candidates with M entries of random scores, then
times validation (schema, coverage, candidate hashes, recomputed metrics, duplicate
checks) and rendering (ranking, 10,000-resample bootstrap CI, Wilcoxon, plot).
ml-100k-sized boards store scores inline; Amazon-sized ones (> 50,000 scores) go to
a sibling parquet file, so both paths are timed. Prints seconds and the per-entry cost.

    python bench/leaderboard_validate.py [--sizes 95,5000] [--entries 10]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

os.environ.setdefault("R2BENCH_PROGRESS", "0")


def make_board(root: Path, n: int, m: int, seed: int = 0) -> Path:
    from r2bench.atomic import sha256_file, write_text
    from r2bench.eval.metrics import per_instance_metrics
    from r2bench.leaderboard.board import BOARD_SCHEMA, candidate_set_hash, write_board
    from r2bench.leaderboard.schema import ENTRY_SCHEMA, STATED_METRICS, dump_entry, encode_scores

    rng = np.random.default_rng(seed)
    folder = root / "bench-board"
    ids = np.arange(n, dtype=np.int64) * 7 + 3
    cands = [[f"i{(i * 20 + j) % 9973}" for j in range(20)] for i in range(n)]
    tpos = rng.integers(0, 20, n)
    targets = [c[t] for c, t in zip(cands, tpos)]
    write_board(folder, {
        "schema_version": BOARD_SCHEMA, "dataset": folder.name, "title": f"{n} instances", "split": "test",
        "k": 20, "fingerprint": "ab" * 32,
        "instances": {"instance_id": ids.tolist(), "target": targets,
                      "candidates_sha": [candidate_set_hash(c) for c in cands]},
    })
    (folder / "entries").mkdir()
    for e in range(m):
        scores = rng.random((n, 20)) + (e / m) * (np.arange(20)[None, :] == tpos[:, None])
        long = pl.DataFrame({"instance_id": np.repeat(ids, 20), "item_id": [x for c in cands for x in c],
                             "score": scores.reshape(-1)})
        slug = f"method-{e}"
        obj, big = encode_scores(long, slug)
        if big is not None:
            big.write_parquet(folder / "entries" / f"{slug}.scores.parquet")
            obj = {**obj, "sha256": sha256_file(folder / "entries" / f"{slug}.scores.parquet")}
        metrics = per_instance_metrics(scores, tpos, STATED_METRICS)
        entry = {"schema_version": ENTRY_SCHEMA, "slug": slug, "method_card": {"name": f"Method {e}", "used_val_split": False},
                 "benchmark": {"dataset": folder.name, "fingerprint": "ab" * 32, "split": "test", "n_instances": n},
                 "r2bench_version": "bench", "submitted_at": "2026-01-01", "run": {"limit": None, "perturbation": None},
                 "cost": {}, "stated_metrics": {k: float(v.mean()) for k, v in metrics.items()}, "scores": obj}
        write_text(folder / "entries" / f"{slug}.json", dump_entry(entry))
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="95,5000", help="test-instance counts, comma-separated")
    ap.add_argument("--entries", type=int, default=10)
    args = ap.parse_args()
    from r2bench.leaderboard.publish import render_all
    from r2bench.leaderboard.validate import validate_tree

    print(f"{'instances':>9} {'entries':>7} {'storage':>8} {'MB':>6} {'validate s':>10} {'render s':>9} {'validate s/entry':>16}")
    for n in (int(x) for x in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            folder = make_board(Path(tmp), n, args.entries)
            size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6
            storage = "parquet" if any(folder.glob("entries/*.parquet")) else "inline"
            t0 = time.perf_counter()
            problems = validate_tree(folder)
            tv = time.perf_counter() - t0
            assert problems == [], problems[:3]
            t0 = time.perf_counter()
            render_all(folder)
            tr = time.perf_counter() - t0
            print(f"{n:>9} {args.entries:>7} {storage:>8} {size:>6.2f} {tv:>10.2f} {tr:>9.2f} {tv / args.entries:>16.3f}")


if __name__ == "__main__":
    main()
