"""Publishing boards: validate every entry, rank the valid ones, render and write the files.

``r2bench leaderboard render`` and ``r2bench submit`` call :func:`render_all`. It
composes the three independent steps: :func:`r2bench.leaderboard.validate.check_board`
(what is valid), :func:`r2bench.leaderboard.scoring.rank_entries` (in which order,
with CIs and markers) and :mod:`r2bench.leaderboard.render` (what the pages say).
"""

from __future__ import annotations

from pathlib import Path

from r2bench.atomic import write_text
from r2bench.leaderboard.board import BOARD_FILE, board_dirs
from r2bench.leaderboard.render import plot_png_base64, render_html, render_markdown, render_overview
from r2bench.leaderboard.scoring import BoardView, rank_entries
from r2bench.leaderboard.validate import check_board


def board_view(folder: str | Path) -> BoardView:
    """Validate one board and rank its valid entries."""
    folder = Path(folder)
    board, entries, problems = check_board(folder)
    ranked = rank_entries([en for en in entries if en.ok]) if board is not None and not board.placeholder else []
    return BoardView(folder, board, ranked, problems)


def render_board(folder: str | Path) -> list[str]:
    """Write ``README.md`` and ``index.html`` of one board; returns the validation problems seen."""
    view = board_view(folder)
    _write_board(view)
    return view.problems


def _write_board(view: BoardView) -> None:
    if view.board is None:
        return
    write_text(view.folder / "README.md", render_markdown(view.board, view.ranked))
    write_text(view.folder / "index.html",
               render_html(view.board, view.ranked, plot_png_base64(view.ranked, view.board.title)))


def render_all(root: str | Path, check: bool = False) -> list[str]:
    """Render every board under ``root`` and the overview ``root/README.md``; returns the
    validation problems seen (invalid entries are left out of the boards).

    ``check=True`` writes nothing and instead reports each Markdown file that is not
    what rendering would produce (for CI: "entries changed but the board was not
    re-rendered"). The HTML pages are not compared: their embedded PNG depends on the
    matplotlib version and fonts.
    """
    root = Path(root)
    views = [board_view(folder) for folder in board_dirs(root)]
    problems = [p for v in views for p in v.problems]
    wanted = {v.folder / "README.md": render_markdown(v.board, v.ranked) for v in views if v.board is not None}
    overview = not (root / BOARD_FILE).is_file()  # a single board folder has no overview
    if overview:
        wanted[root / "README.md"] = render_overview(views)
    if check:
        return problems + [f"{path}: out of date; run `r2bench leaderboard render`"
                           for path, text in wanted.items()
                           if not path.is_file() or path.read_text(encoding="utf-8") != text]
    for v in views:
        _write_board(v)
    if overview:
        write_text(root / "README.md", wanted[root / "README.md"])
    return problems
