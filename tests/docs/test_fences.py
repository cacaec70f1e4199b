"""Every documented command runs: one test per fence of README.md and docs/ (see tests/docs/fences.py).

Fences marked ``<!-- skip: why -->`` are reported as skipped with that reason (``-ra``
lists them); the others run in order, page by page, each page in its own folder and
R2BENCH_HOME. A failure names the file and line of the command that failed.
"""

from __future__ import annotations

import pytest

from tests.docs.fences import DocError, Item, Page, all_items

ITEMS = [it for it in all_items() if it.runs or it.skip]
_pages: dict[str, Page] = {}  # source -> its page
_state: dict[str, str] = {}  # item.where -> "ok" or the failure message


def _run(page: Page, item: Item) -> None:
    try:
        page.run(item)
    except DocError as exc:
        _state[item.where] = str(exc)
        raise
    _state[item.where] = "ok"


@pytest.mark.parametrize("item", ITEMS, ids=[it.where for it in ITEMS])
def test_documented_command(item: Item, docs_workspace):
    if item.skip:
        pytest.skip(f"{item.where}: {item.skip}")
    if item.source not in _pages:
        _pages[item.source] = docs_workspace.new_page(item.source)
    page = _pages[item.source]
    # the page's earlier commands first (they prepare what this one uses), once each
    for earlier in [it for it in ITEMS if it.source == item.source and it.runs and it.line < item.line]:
        if earlier.where not in _state:
            try:
                _run(page, earlier)
            except DocError:
                pass
        if _state[earlier.where] != "ok":
            pytest.fail(f"an earlier command of {item.source} failed, so this one cannot run:\n"
                        f"{_state[earlier.where]}", pytrace=False)
    if item.where in _state:  # already run as an earlier command of another test
        if _state[item.where] != "ok":
            pytest.fail(_state[item.where], pytrace=False)
        return
    try:
        _run(page, item)
    except DocError as exc:
        pytest.fail(str(exc), pytrace=False)


def test_there_are_documented_commands_that_run():
    """Guards the parser itself: if it stopped finding fences, every test above would vanish silently."""
    sources = {it.source for it in ITEMS if it.runs}
    assert "README.md" in sources and len(sources) >= 8, sorted(sources)
    assert sum(it.runs for it in ITEMS) >= 20
