"""The documentation's commands, found and run: every ```bash and ```python fence of README.md,
docs/**/*.md and the files the docs include, in the spirit of mktestdocs and sybil.

A fence runs unless the line right above it (blank lines aside) says why not::

    <!-- skip: needs a GPU -->

and a table copied from a command's output can be checked against that output::

    <!-- table-from: report/quickstart/report.md -->   (a file the page's commands wrote)
    <!-- table-from: stdout -->                        (what the fence before it printed)

How they run (see docs/contributing-docs.md):

- each page in its own working folder, its fences in order, so a page can prepare, then
  run, then report; the folder starts with a copy of ``leaderboards/``, links to the
  repository's read-only folders (``bench``, ``scripts``, ``data_cards``, ...) and an
  empty ``docs/img/``;
- in its own ``R2BENCH_HOME``, which starts with MovieLens-100K prepared (the state
  ``r2bench quickstart`` leaves) and shares one folder of converted models; ``./runs``
  is ``R2BENCH_RUNS``; offline (``HF_HUB_OFFLINE=1``), no progress bars;
- ``r2bench`` and ``python`` are the code of the checkout the docs are in: a shim first on
  PATH runs ``python -m r2bench`` with the repository root on PYTHONPATH;
- ```bash fences as ``bash`` with ``set -euo pipefail``: the first failing command fails
  the page, named by file and line; ```python fences as a script;
- ``<run-id>`` in a command stands for the newest run folder under ``./runs``.

``python -m tests.docs.fences`` lists every fence with its status (and why it is skipped).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHELL = {"bash"}  # the only tag for commands that run; ``sh``/``shell``/``console`` are refused
OTHER_SHELLS = {"sh", "shell", "console", "zsh", "shell-session"}
PYTHON = {"python", "py"}
#: read-only parts of the repository that the commands may read (linked, never copied)
LINKED = ("bench", "scripts", "data_cards", "baselines", "r2bench", "tests", "pyproject.toml", "mkdocs.yml")
#: parts the commands may write to (copied into each page's folder)
COPIED = ("leaderboards",)
DEFAULT_TIMEOUT_S = 300

_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
_MARK = re.compile(r"^[ \t]*<!--\s*(?P<kind>skip|table-from):\s*(?P<arg>.*?)\s*-->[ \t]*$")
_INCLUDE = re.compile(r"^[ \t]*<!--\s*r2bench:include\s+(?P<path>\S+)\s*-->[ \t]*$", re.M)


class DocError(Exception):
    """A documented command failed, or a fence/marker is malformed; the message names file:line."""


@dataclass
class Item:
    """A fence (``kind`` = its language) or a ``table-from`` check, in document order."""

    source: str  # path relative to the repository root
    line: int  # 1-based line of the opening fence (or of the table's first row)
    kind: str  # "bash", "python", "table", or another language (never run)
    text: str = ""  # the fence's body, dedented; for a table, its rows
    skip: str | None = None  # why it is not run
    arg: str = ""  # table-from: where the table comes from
    body_line: int = 0  # 1-based line of the fence's first body line

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.skip is None and self.kind in SHELL | PYTHON | {"table"}


def doc_sources(root: Path = ROOT) -> list[Path]:
    """README.md, docs/**/*.md (not the hooks) and every file a page includes, sorted."""
    pages = [root / "README.md"] + sorted(p for p in (root / "docs").rglob("*.md") if "hooks" not in p.parts)
    included = set()
    for page in pages:
        for m in _INCLUDE.finditer(page.read_text(encoding="utf-8")):
            included.add((root / m["path"]).resolve())
    return pages + sorted(included - {p.resolve() for p in pages})


def parse(path: Path, root: Path = ROOT) -> list[Item]:
    """The fences and table checks of one Markdown file, in order. Raises DocError on a
    marker that does not sit above a fence (or a table), an unclosed fence, a fence tagged
    ``sh``/``shell``/``console`` (write ``bash`` to run it, ``text`` to show it), or an
    untagged fence that looks like commands."""
    rel = path.resolve().relative_to(root.resolve()).as_posix() if path.resolve().is_relative_to(root.resolve()) \
        else str(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    items: list[Item] = []
    pending: tuple[str, str, int] | None = None  # (kind, arg, line) of the last marker
    i = 0
    while i < len(lines):
        line = lines[i]
        mark = _MARK.match(line)
        if mark:
            if pending:
                raise DocError(f"{rel}:{pending[2]}: marker '{pending[0]}' is not right above a fence")
            pending = (mark["kind"], mark["arg"], i + 1)
            if not pending[1]:
                raise DocError(f"{rel}:{i + 1}: '{mark['kind']}:' needs a reason or a source")
            i += 1
            continue
        opened = _OPEN.match(line)
        if opened:
            indent, fence, info = opened["indent"], opened["fence"], opened["info"].strip()
            lang = info.split()[0].lstrip("{.").rstrip("}").lower() if info else ""
            body, j = [], i + 1
            while j < len(lines):
                close = lines[j].strip()
                if close.startswith(fence[0] * len(fence)) and set(close) == {fence[0]}:
                    break
                body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip())
                j += 1
            else:
                raise DocError(f"{rel}:{i + 1}: fence never closed")
            text = "\n".join(body)
            if lang in OTHER_SHELLS:
                raise DocError(f"{rel}:{i + 1}: fence tagged '{lang}': tag commands `bash` (they run) "
                               f"or `text` (shown only)")
            if not lang and re.search(r"^\s*(\$ )?(r2bench|python|pip|bash) ", text, re.M):
                raise DocError(f"{rel}:{i + 1}: untagged fence with commands: tag it `bash` (it runs) "
                               f"or `text` (shown only)")
            item = Item(rel, i + 1, lang or "text", text, body_line=i + 2)
            if pending:
                kind, arg, at = pending
                if kind != "skip":
                    raise DocError(f"{rel}:{at}: 'table-from' must sit above a table, not a fence")
                item.skip = arg
                pending = None
            items.append(item)
            i = j + 1
            continue
        if pending and pending[0] == "table-from" and line.lstrip().startswith("|"):
            j = i
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                j += 1
            rows = [r.strip() for r in lines[i:j] if not re.fullmatch(r"\|[\s:|-]*\|", r.strip())]
            items.append(Item(rel, i + 1, "table", "\n".join(rows), arg=pending[1]))
            pending = None
            i = j
            continue
        if pending and line.strip():
            raise DocError(f"{rel}:{pending[2]}: marker '{pending[0]}' is not right above a "
                           f"{'table' if pending[0] == 'table-from' else 'fence'}")
        i += 1
    if pending:
        raise DocError(f"{rel}:{pending[2]}: marker '{pending[0]}' at the end of the file")
    return items


def all_items(root: Path = ROOT) -> list[Item]:
    return [item for src in doc_sources(root) for item in parse(src, root)]


# --------------------------------------------------------------------------- running


@dataclass
class Workspace:
    """What every page's commands share: the shims and a prepared MovieLens-100K to copy."""

    base: Path
    root: Path = ROOT
    bin: Path = field(init=False)
    seed_home: Path = field(init=False)
    models: Path = field(init=False)

    def __post_init__(self) -> None:
        self.bin = self.base / "bin"
        self.seed_home = self.base / "seed-home"
        self.models = self.base / "models"
        self.bin.mkdir(parents=True, exist_ok=True)
        self.models.mkdir(exist_ok=True)
        for name, module in (("r2bench", "-m r2bench"), ("python", ""), ("python3", "")):
            shim = self.bin / name
            shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" {module} "$@"\n')
            shim.chmod(0o755)

    def env(self, home: Path, cwd: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("PYTEST_")}
        env.update(
            PATH=f"{self.bin}{os.pathsep}{env.get('PATH', '')}",
            PYTHONPATH=str(self.root) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
            R2BENCH_HOME=str(home), R2BENCH_RUNS=str(cwd / "runs"), R2BENCH_CARDS_DIR=str(home / "data_cards"),
            R2BENCH_PROGRESS="0", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MPLBACKEND="Agg",
        )
        return env

    def prepared_home(self) -> Path:
        """A home with MovieLens-100K prepared, made once (``r2bench prepare movielens-100k``)."""
        if not (self.seed_home / "benchmarks" / "movielens-100k" / "LATEST").is_file():
            scratch = self.base / "seed-cwd"
            scratch.mkdir(exist_ok=True)
            proc = subprocess.run([str(self.bin / "r2bench"), "prepare", "movielens-100k"], cwd=scratch,
                                  env=self.env(self.seed_home, scratch), capture_output=True, text=True, timeout=600)
            if proc.returncode:
                raise DocError(f"could not prepare movielens-100k for the docs' commands:\n{proc.stderr[-3000:]}")
        return self.seed_home

    def new_page(self, source: str) -> "Page":
        slug = re.sub(r"[^A-Za-z0-9]+", "-", source).strip("-")
        cwd, home = self.base / "pages" / slug / "work", self.base / "pages" / slug / "home"
        if cwd.parent.exists():
            shutil.rmtree(cwd.parent)
        cwd.mkdir(parents=True)
        shutil.copytree(self.prepared_home(), home, symlinks=True)
        (home / "models").symlink_to(self.models, target_is_directory=True)
        for name in LINKED:
            if (self.root / name).exists():
                (cwd / name).symlink_to(self.root / name)
        for name in COPIED:
            if (self.root / name).exists():
                shutil.copytree(self.root / name, cwd / name)
        (cwd / "docs" / "img").mkdir(parents=True)
        return Page(self, source, cwd, home)


@dataclass
class Page:
    ws: Workspace
    source: str
    cwd: Path
    home: Path
    last_stdout: str = ""

    def run(self, item: Item, timeout: int = DEFAULT_TIMEOUT_S) -> str:
        """Run one fence (or check one table); return its stdout. Raises DocError naming file:line."""
        if item.kind == "table":
            return self._check_table(item)
        env = self.ws.env(self.home, self.cwd)
        if item.kind in SHELL:
            script = self.cwd / ".fence.sh"
            prelude = ['set -euo pipefail', 'trap \'echo "__fence_failed_at__ $LINENO" >&2\' ERR']
            body = item.text.replace("<run-id>", '$(ls -1t runs | head -n 1)')
            script.write_text("\n".join(prelude + [body]) + "\n")
            cmd, offset = ["bash", str(script)], len(prelude)
        else:
            script = self.cwd / ".fence.py"
            script.write_text(item.text + "\n")
            cmd, offset = [sys.executable, str(script)], 0
        try:
            proc = subprocess.run(cmd, cwd=self.cwd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise DocError(f"{item.where}: the {item.kind} fence ran past {timeout} s "
                           f"(make the documented command cheaper, or mark it `<!-- skip: why -->`)\n"
                           f"{_tail(exc.stderr)}") from None
        self.last_stdout = proc.stdout
        if proc.returncode:
            line = _command_start(item, self._failed_line(item, proc.stderr, offset, script.name))
            command = _command_at(item, line)
            raise DocError(f"{item.source}:{line}: `{command}` failed (exit {proc.returncode}) "
                           f"[{item.kind} fence at {item.where}]\n--- stderr ---\n{_tail(proc.stderr)}"
                           f"\n--- stdout ---\n{_tail(proc.stdout, 1500)}")
        return proc.stdout

    @staticmethod
    def _failed_line(item: Item, stderr: str, offset: int, script: str) -> int:
        if item.kind in SHELL:
            found = re.findall(r"__fence_failed_at__ (\d+)", stderr)
        else:
            found = re.findall(rf'File ".*{re.escape(script)}", line (\d+)', stderr)
        if not found:
            return item.line
        return item.body_line + int(found[-1 if item.kind in PYTHON else 0]) - offset - 1

    def _check_table(self, item: Item) -> str:
        if item.arg == "stdout":
            produced, what = self.last_stdout, "the output of the fence above it"
        else:
            path = self.cwd / item.arg
            if not path.is_file():
                raise DocError(f"{item.where}: table-from {item.arg}: the page's commands wrote no such file")
            produced, what = path.read_text(encoding="utf-8"), item.arg
        lines = {_norm(x) for x in produced.splitlines()}
        missing = [row for row in item.text.splitlines() if _norm(row) not in lines]
        if missing:
            raise DocError(f"{item.where}: {len(missing)} row(s) of this table are not in {what} "
                           f"(a stale copy?):\n" + "\n".join(missing[:5]))
        return ""


def _norm(row: str) -> str:
    return re.sub(r"\s+", " ", row.strip())


def _tail(text, n: int = 3000) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = (text or "").replace("__fence_failed_at__", "failed at script line")
    return text if len(text) <= n else "..." + text[-n:]


def _command_start(item: Item, line: int) -> int:
    """The first line of the logical command (continuation lines joined) that spans ``line``."""
    if item.kind not in SHELL:
        return line
    body = item.text.splitlines()
    k = line - item.body_line
    if not 0 <= k < len(body):
        return line
    while k > 0 and body[k - 1].rstrip().endswith("\\"):
        k -= 1
    return item.body_line + k


def _command_at(item: Item, line: int) -> str:
    """The logical command (continuation lines joined) that starts or spans ``line``."""
    body = item.text.splitlines()
    k = line - item.body_line
    if not 0 <= k < len(body):
        return item.text.strip().splitlines()[0] if item.text.strip() else ""
    start = k
    while start > 0 and body[start - 1].rstrip().endswith("\\"):
        start -= 1
    end = k
    while end < len(body) - 1 and body[end].rstrip().endswith("\\"):
        end += 1
    return " ".join(x.strip().rstrip("\\").strip() for x in body[start:end + 1])


def run_source(path: Path, ws: Workspace, root: Path = ROOT, until: int | None = None) -> list[Item]:
    """Run every fence (and table check) of one file in order, up to the item at line ``until``;
    returns the items run. Raises DocError at the first failure."""
    items = [it for it in parse(path, root) if it.runs and (until is None or it.line <= until)]
    if not items:
        return []
    page = ws.new_page(items[0].source)
    for item in items:
        page.run(item)
    return items


def main() -> int:
    items = all_items()
    runs = [it for it in items if it.runs]
    skipped = [it for it in items if it.skip]
    print(f"{len(runs)} run, {len(skipped)} skipped, {len(items) - len(runs) - len(skipped)} shown only "
          f"(other languages)\n")
    for it in items:
        status = "run" if it.runs else (f"skip: {it.skip}" if it.skip else f"shown ({it.kind})")
        first = next((x.strip() for x in it.text.splitlines() if x.strip() and not x.strip().startswith("#")), "")
        print(f"{it.where:42s} {it.kind:7s} {status[:70]:70s} {first[:60]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
