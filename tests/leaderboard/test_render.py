"""Rendering: ranking, markers, escaping of hostile strings, the overview, and a headless browser."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from r2bench.leaderboard import safety
from r2bench.leaderboard.publish import render_all
from r2bench.leaderboard.render import render_html, render_markdown
from r2bench.leaderboard.scoring import rank_entries
from r2bench.leaderboard.validate import Entry, check_board
from tests.leaderboard.conftest import read_entry, write_entry

HOSTILE = "<script>alert(1)</script> | [x](javascript:alert(1)) ![i](http://e/x.png) `code` *em* <img src=x onerror=alert(1)>"


def _entry(name: str, ndcg10: np.ndarray) -> Entry:
    m = {"ndcg@1": ndcg10 * 0.5, "ndcg@5": ndcg10 * 0.8, "ndcg@10": ndcg10, "hr@1": ndcg10, "hr@5": ndcg10,
         "hr@10": ndcg10, "mrr": ndcg10}
    return Entry(path=Path(f"{safety.slugify(name)}.json"), raw={"method_card": {"name": name}, "submitted_at": "2026-01-01"},
                 metrics=m)


def test_ranking_markers_and_ci():
    rng = np.random.default_rng(0)
    strong = np.clip(rng.normal(0.8, 0.1, 200), 0, 1)
    weak = np.clip(rng.normal(0.3, 0.1, 200), 0, 1)
    close = np.clip(strong - rng.normal(0.0, 0.01, 200), 0, 1)
    ranked = rank_entries([_entry("Weak", weak), _entry("Close", close), _entry("Strong", strong)])
    assert [r.entry.name for r in ranked] == ["Strong", "Close", "Weak"]
    assert [r.rank for r in ranked] == [1, 2, 3]
    assert ranked[2].marker == "§" and ranked[2].p_value < 0.001  # far below the leader
    lo, hi = ranked[0].ci
    assert lo < strong.mean() < hi and hi - lo < 0.05
    identical = rank_entries([_entry("A", weak), _entry("B", weak.copy())])
    assert identical[1].p_value == 1.0 and identical[1].marker == "" and identical[0].marker == ""


def test_single_entry_has_no_test():
    (only,) = rank_entries([_entry("Only", np.full(10, 0.5))])
    assert only.p_value is None and only.marker == ""


def test_board_readme_ranked_by_ndcg10(board_dir):
    board, entries, _ = check_board(board_dir)
    text = (board_dir / "README.md").read_text()
    rows = [line for line in text.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert len(rows) == 3
    order = sorted(entries, key=lambda e: -e.metrics["ndcg@10"].mean())
    for row, e in zip(rows, order):
        assert f"{e.metrics['ndcg@10'].mean():.4f}" in row and safety.md_escape(e.name) in row
    assert "p < 0.001" in text and "paired Wilcoxon" in text


def test_hostile_description_is_inert(board_dir):
    path = board_dir / "entries" / "random.json"
    entry = read_entry(path)
    entry["method_card"]["description"] = HOSTILE
    entry["method_card"]["authors"] = "Mallory | <b>bold</b>"
    write_entry(path, entry)
    assert render_all(board_dir.parent) == []  # free text may hold anything; it is escaped
    md = (board_dir / "README.md").read_text()
    html = (board_dir / "index.html").read_text()
    for bad in ("<script", "<img", "<b>", "](javascript", "![i]", "`code`"):
        assert bad not in md, bad
    assert "\\| \\[x\\]\\(javascript\\:alert\\(1\\)\\)" in md
    for bad in ("<script", "<img src=x", "<b>bold"):
        assert bad not in html, bad
    assert "&lt;script&gt;" in html
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    # every table row keeps exactly its columns: no pipe escaped its cell
    header = next(line for line in md.splitlines() if line.startswith("| # |"))
    for line in md.splitlines():
        if re.match(r"^\| \d+ \|", line):
            assert len(re.findall(r"(?<!\\)\|", line)) == len(re.findall(r"\|", header))


def test_md_code_span_cannot_be_closed_early():
    assert safety.md_code("r2bench run --method x") == "` r2bench run --method x `"
    assert safety.md_code("a ``b`` c\n<script>") == "``` a ``b`` c <script> ```"


def test_md_escape_and_links():
    assert safety.md_escape("a|b\nc") == "a\\|b c"
    assert safety.md_link("x", "javascript:alert(1)") == "x"
    assert safety.md_link("x", "https://e.org/a b") == "x"  # whitespace: refused, rendered as text
    assert safety.md_link("x", "https://e.org/p(1)") == "[x](<https://e.org/p%281%29>)"
    assert safety.html_link("x", "https://e.org/?a=1&b=2") == (
        '<a href="https://e.org/?a=1&amp;b=2" rel="nofollow noopener noreferrer">x</a>')


@pytest.mark.parametrize("name,slug", [("../../etc", "etc"), ("<script>", "script"), ("SASRec (RecBole)", "sasrec-recbole"),
                                       ("Ünïcödé Rank", "unicode-rank"), ("| [x](javascript:..)", "x-javascript")])
def test_slugify(name, slug):
    assert safety.slugify(name) == slug
    assert safety.check_slug(slug) is None


def test_slugify_empty():
    with pytest.raises(ValueError, match="no letters or digits"):
        safety.slugify("../..")


def test_render_is_deterministic(board_dir):
    md1 = (board_dir / "README.md").read_bytes()
    html1 = (board_dir / "index.html").read_bytes()
    render_all(board_dir.parent)
    assert (board_dir / "README.md").read_bytes() == md1
    assert (board_dir / "index.html").read_bytes() == html1


def test_html_embeds_a_png_plot(board_dir):
    pytest.importorskip("matplotlib")
    html = (board_dir / "index.html").read_text()
    m = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert m, "no embedded plot"
    assert base64.b64decode(m.group(1))[:8] == b"\x89PNG\r\n\x1a\n"


def test_overview_lists_boards_and_empty_placeholders(lb_root, capsys):
    from r2bench.cli import main
    from r2bench.leaderboard.board import placeholder_board_dict, write_board

    write_board(lb_root / "amazon-video-games", placeholder_board_dict("amazon-video-games", "Amazon Video Games"))
    assert main(["leaderboard", "render", "--root", str(lb_root)]) == 0
    overview = (lb_root / "README.md").read_text()
    assert "[synthetic](<synthetic/README.md>)" in overview and "| 3 |" in overview
    assert "Amazon Video Games" in overview and "no entries until real runs are submitted" in overview
    empty = (lb_root / "amazon-video-games" / "README.md").read_text()
    assert "No entries yet" in empty and "|" not in empty
    assert "No entries yet" in (lb_root / "amazon-video-games" / "index.html").read_text()


def test_invalid_entries_are_not_rendered(board_dir, capsys):
    from r2bench.cli import main

    path = board_dir / "entries" / "random.json"
    entry = read_entry(path)
    entry["stated_metrics"]["ndcg@10"] = 0.99
    write_entry(path, entry)
    assert main(["leaderboard", "render", "--root", str(board_dir.parent)]) == 0
    assert "skipped (invalid)" in capsys.readouterr().err
    assert "Random" not in (board_dir / "README.md").read_text().split("## Entries")[0]


def test_render_functions_without_entries(board_dir):
    board, _, _ = check_board(board_dir)
    assert "No entries yet" in render_markdown(board, [])
    assert "No entries yet" in render_html(board, [], None)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--enable-logging=stderr", "--v=0"]


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (apt-get install -y chromium)")
def test_html_renders_in_headless_chromium(board_dir, tmp_path):
    path = board_dir / "entries" / "random.json"
    entry = read_entry(path)
    entry["method_card"]["description"] = HOSTILE
    write_entry(path, entry)
    render_all(board_dir.parent)
    page = (board_dir / "index.html").resolve().as_uri()
    common = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # the browser parsed the page: three ranked rows, the plot, and no script element anywhere
    assert dom.stdout.count("<tr") == 4 and "<img alt=" in dom.stdout and "<script" not in dom.stdout
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console  # no errors, no CSP violations, nothing logged by the page
    shot = tmp_path / "shot.png"
    run = subprocess.run([*common, f"--screenshot={shot}", "--window-size=1200,900", page],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.is_file()
    mpimg = pytest.importorskip("matplotlib.image")
    pixels = mpimg.imread(shot)
    assert pixels.shape[0] == 900 and pixels[..., :3].std() > 0.01  # something was drawn


def test_render_check_detects_stale_readme(lb_root, capsys):
    from r2bench.cli import main

    assert main(["leaderboard", "render", "--root", str(lb_root), "--check"]) == 0
    board_md = next(lb_root.glob("*/README.md"))
    board_md.write_text(board_md.read_text().replace("0.", "9.", 1))
    assert main(["leaderboard", "render", "--root", str(lb_root), "--check"]) == 1
    assert "README.md: out of date" in capsys.readouterr().err
    assert main(["leaderboard", "render", "--root", str(lb_root)]) == 0
    assert main(["leaderboard", "render", "--root", str(lb_root), "--check"]) == 0


def test_render_a_single_board_folder(board_dir):
    before = (board_dir / "README.md").read_text()
    render_all(board_dir)
    assert (board_dir / "README.md").read_text() == before  # the board page, not an overview
    assert render_all(board_dir, check=True) == []
