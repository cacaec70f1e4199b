"""Draw a leaderboard's bar chart as a PNG file: the chart `r2bench leaderboard render` embeds in index.html.

    python scripts/board_png.py leaderboards/movielens-100k docs/img/leaderboard-movielens-100k.png

The README's picture is drawn this way. Only valid entries are drawn, ranked by their
recomputed NDCG@10 with bootstrap 95% CIs, exactly as on the board's page.
"""

from __future__ import annotations

import argparse
import base64
from pathlib import Path

from r2bench.leaderboard.publish import board_view
from r2bench.leaderboard.render import plot_png_base64


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("board", help="a board folder, e.g. leaderboards/movielens-100k")
    parser.add_argument("out", help="the PNG file to write")
    args = parser.parse_args()
    view = board_view(args.board)
    if view.board is None or not view.ranked:
        parser.error(f"{args.board}: no board with valid entries")
    png = plot_png_base64(view.ranked, view.board.title)
    if png is None:
        parser.error("matplotlib is needed: pip install 'r2bench[plot]'")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_bytes(base64.b64decode(png))
    print(f"{args.out}: {len(view.ranked)} entries of {view.board.title}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
