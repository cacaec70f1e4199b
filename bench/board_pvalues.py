"""Paired Wilcoxon p-values between leaderboard entries, recomputed from their per-instance scores.

    python bench/board_pvalues.py movielens-100k prompt4nr-smollm2-135m-lora \\
        --against random,r2rank-zero-shot-smollm2-135m-no-cot,tallrec-smollm2-135m-lora

Prints each entry's NDCG@10 (recomputed by r2bench's evaluator on the board's instances, as
CI does) and the two-sided paired Wilcoxon p-value of the first entry against each other one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def entry_ndcg10(board_dir: Path, board, slug: str):
    from r2bench.leaderboard.schema import decode_scores
    from r2bench.leaderboard.scoring import recompute_metrics

    path = board_dir / "entries" / f"{slug}.json"
    if not path.is_file():
        raise SystemExit(f"no entry {path}")
    scores, problems = decode_scores(json.loads(path.read_text())["scores"], path, slug)
    if scores is None:
        raise SystemExit(f"{path}: {problems}")
    return recompute_metrics(scores.frame, board, ("ndcg@10",))["ndcg@10"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("board", help="board name under leaderboards/ (e.g. movielens-100k)")
    ap.add_argument("entry", help="the entry's slug")
    ap.add_argument("--against", required=True, help="comma-separated slugs to compare with")
    ap.add_argument("--root", default="leaderboards")
    args = ap.parse_args()
    from r2bench.eval.significance import wilcoxon_p
    from r2bench.leaderboard.board import load_board

    board_dir = Path(args.root) / args.board
    board = load_board(board_dir)
    mine = entry_ndcg10(board_dir, board, args.entry)
    print(f"| entry | NDCG@10 | p ({args.entry} vs it) |")
    print("|---|---:|---:|")
    print(f"| {args.entry} | {mine.mean():.4f} | - |")
    for slug in (s for s in args.against.split(",") if s):
        other = entry_ndcg10(board_dir, board, slug)
        print(f"| {slug} | {other.mean():.4f} | {wilcoxon_p(mine, other):.2g} |")


if __name__ == "__main__":
    main()
