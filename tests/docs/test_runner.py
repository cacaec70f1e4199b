"""The docs' command runner catches what it should: a documented command changed to a wrong flag fails and
is named by file and line; malformed markers and fences are refused; a stale table is caught."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from tests.docs.fences import ROOT, DocError, all_items, parse, run_source


def _r2bench_parsers() -> dict[str, argparse.ArgumentParser]:
    """'run', 'leaderboard validate', ... -> its parser."""
    from r2bench.cli import build_parser

    out = {}

    def walk(parser, prefix):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    key = f"{prefix} {name}".strip()
                    out[key] = sub
                    walk(sub, key)

    walk(build_parser(), "")
    return out


def _a_documented_optional_flag():
    """A command of a fence that runs, `r2bench VERB ... --flag ...` with an optional --flag: the one with
    the fewest commands before it on its page (the cheapest to reach). Returns (item, line in the fence, flag)."""
    parsers = _r2bench_parsers()
    candidates = []
    items = all_items()
    for item in items:
        if not (item.runs and item.kind == "bash"):
            continue
        earlier = sum(1 for it in items if it.source == item.source and it.runs and it.line < item.line)
        body = item.text.splitlines()
        for i, line in enumerate(body):
            if i and body[i - 1].rstrip().endswith("\\") or line.rstrip().endswith("\\"):
                continue
            words = shlex.split(line, comments=True)
            if len(words) < 3 or words[0] != "r2bench" or words[1] not in parsers:
                continue
            optional = {o for a in parsers[words[1]]._actions if not a.required for o in a.option_strings}
            flags = [w.split("=")[0] for w in words[2:] if w.split("=")[0] in optional - {"--help", "--set"}]
            if flags:
                candidates.append(((earlier, i), item, i, flags[0]))
                break
    if not candidates:
        pytest.fail("no documented r2bench command with an optional --flag runs in the docs")
    _, item, i, flag = min(candidates, key=lambda c: c[0])
    return item, i, flag


def test_a_documented_command_changed_to_a_wrong_flag_fails_and_is_named(tmp_path, docs_workspace):
    item, i, flag = _a_documented_optional_flag()
    src = ROOT / item.source
    lines = src.read_text(encoding="utf-8").splitlines()
    doc_line = item.body_line + i
    wrong = flag + "x"  # --limit-users -> --limit-usersx: no option has that name or prefix
    assert flag in lines[doc_line - 1]
    lines[doc_line - 1] = lines[doc_line - 1].replace(flag, wrong, 1)
    copy = tmp_path / item.source  # a temporary copy, same name and lines: the docs are not touched
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text("\n".join(lines) + "\n", encoding="utf-8")

    with pytest.raises(DocError) as caught:
        run_source(copy, docs_workspace, root=tmp_path, until=item.line)
    message = str(caught.value)
    assert message.startswith(f"{item.source}:{doc_line}: "), message[:300]
    # the command's own error names the wrong flag: it is the flag that failed, not something before it
    # (and the unchanged command runs: test_fences.py runs it)
    assert wrong in message or wrong.lstrip("-").replace("-", "_") in message, message


def _page(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "page.md"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_failing_line_of_a_multi_command_fence_is_named(tmp_path, docs_workspace):
    page = _page(tmp_path, "# T\n\n```bash\necho one\nls --no-such-option-xyz \\\n   /tmp\necho never\n```\n")
    with pytest.raises(DocError, match=r"^page.md:5: `ls --no-such-option-xyz /tmp` failed"):
        run_source(page, docs_workspace, root=tmp_path)


def test_a_python_fence_failure_names_its_line(tmp_path, docs_workspace):
    page = _page(tmp_path, "# T\n\n```python\nx = 1\n\nraise SystemExit(f'bad {x}')\n```\n")
    with pytest.raises(DocError, match=r"^page.md:3: "):  # SystemExit with a message: no traceback line
        run_source(page, docs_workspace, root=tmp_path)
    page = _page(tmp_path, "# T\n\n```python\nx = 1\n\nundefined_name + x\n```\n")
    with pytest.raises(DocError, match=r"(?s)^page.md:6: `undefined_name \+ x` failed.*NameError"):
        run_source(page, docs_workspace, root=tmp_path)


def test_a_stale_table_is_caught(tmp_path, docs_workspace):
    page = _page(tmp_path, "# T\n\n```bash\nprintf '| a | b |\\n| 1 | 2 |\\n'\n```\n\n"
                           "<!-- table-from: stdout -->\n| a | b |\n|---|---|\n| 1 | 3 |\n")
    with pytest.raises(DocError, match=r"page.md:8: 1 row\(s\) of this table are not in the output"):
        run_source(page, docs_workspace, root=tmp_path)
    page.write_text(page.read_text().replace("| 1 | 3 |", "| 1 | 2 |"))
    assert len(run_source(page, docs_workspace, root=tmp_path)) == 2


@pytest.mark.parametrize("text, message", [
    ("<!-- skip: why -->\n\nSome text.\n", "not right above a fence"),
    ("<!-- skip: -->\n```bash\nls\n```\n", "needs a reason"),
    ("```sh\nr2bench methods\n```\n", "tagged 'sh'"),
    ("```\nr2bench methods\n```\n", "untagged fence with commands"),
    ("```bash\nls\n", "never closed"),
    ("<!-- table-from: out.md -->\n```bash\nls\n```\n", "must sit above a table"),
])
def test_malformed_markers_and_fences_are_refused(tmp_path, text, message):
    with pytest.raises(DocError, match=re.escape(message)):
        parse(_page(tmp_path, text), tmp_path)


def test_skip_markers_and_languages_are_read(tmp_path):
    items = parse(_page(tmp_path, "<!-- skip: needs a GPU -->\n\n```bash\nnvidia-smi\n```\n\n"
                                  "```text\nr2bench output\n```\n\n   ```python\n   print(1)\n   ```\n"), tmp_path)
    assert [(it.kind, it.skip, it.runs) for it in items] == [
        ("bash", "needs a GPU", False), ("text", None, False), ("python", None, True)]
    assert items[2].text == "print(1)" and items[2].line == 11
