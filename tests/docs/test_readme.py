"""The README stays short and its set-up lines stay what CI runs; the docs name every part of r2bench;
every picture exists and names the command that drew it."""

from __future__ import annotations

import base64
import re
import shlex
from pathlib import Path

from tests.docs.fences import ROOT, doc_sources, parse

README = ROOT / "README.md"
CI = ROOT / ".ci" / "run"
DOCS = ROOT / "docs"


def _setup_lines() -> tuple[str, str]:
    """The README's two set-up commands: the first two bash fences under '## Set-up'."""
    text = README.read_text(encoding="utf-8")
    start = text.index("## Set-up")
    end = text.index("\n## ", start + 1)
    fences = [it for it in parse(README) if it.kind == "bash"
              and start < _offset(text, it.line) < end]
    assert len(fences) == 2, f"expected the two set-up commands under '## Set-up', found {len(fences)}"
    return fences[0].text.strip(), fences[1].text.strip()


def _offset(text: str, line: int) -> int:
    return sum(len(x) + 1 for x in text.splitlines()[: line - 1])


def _normal(command: str) -> str:
    """A command as a list of words, without pip's -q (CI is quiet, the README need not be)."""
    return " ".join(w for w in shlex.split(command) if w != "-q")


def _ci_commands() -> list[str]:
    lines = [ln.strip() for ln in CI.read_text(encoding="utf-8").splitlines()]
    return [_normal(ln) for ln in lines if ln and not ln.startswith("#") and not ln.startswith(("set ", "cd ", "export "))
            and "=" not in ln.split()[0]]


def test_the_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= 150, f"README.md has {n} lines; move reference content to docs/ (at most about 150)"


def test_ci_runs_the_readme_dev_line_and_ends_with_its_test_command():
    _, dev = _setup_lines()
    parts = [_normal(p) for p in dev.split("&&")]
    ci = _ci_commands()
    at = -1
    for part in parts:
        assert part in ci, f".ci/run does not run the README's `{part}` (its commands: {ci})"
        assert ci.index(part) > at, f".ci/run runs the README's `{part}` out of order"
        at = ci.index(part)
    assert ci[-1] == parts[-1], f".ci/run must end with the README's test command `{parts[-1]}`, not `{ci[-1]}`"


def test_the_quickstart_line_installs_what_the_dev_line_does_and_runs_a_documented_command():
    quick, dev = _setup_lines()
    qparts, dparts = [_normal(p) for p in quick.split("&&")], [_normal(p) for p in dev.split("&&")]
    assert qparts[0] == dparts[0].replace(".[all,dev]", ".[all]"), "the two install lines pin different packages"
    no_deps = [p for p in dparts if "--no-deps" in p]
    assert no_deps and no_deps[0] in qparts, "the two lines install different --no-deps packages"
    ran = [it.text.strip() for it in parse(README) if it.runs and it.kind == "bash"]
    assert qparts[-1] in ran, f"the README's `{qparts[-1]}` is not run by the docs' tests"


def test_the_install_page_shows_the_readme_set_up_lines():
    page = [it.text.strip() for it in parse(DOCS / "install.md") if it.kind == "bash"]
    for line in _setup_lines():
        assert line in page, f"docs/install.md does not show the README's set-up line:\n{line}"


def test_readme_links_and_pictures_exist():
    text = README.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if not re.match(r"[a-z]+://", target):
            assert (ROOT / target).exists(), f"README.md links to {target}, which does not exist"


def _pictures() -> list[tuple[Path, int, str, Path]]:
    """(file, line, caption paragraphs around it, picture path) of every picture in README and docs."""
    out = []
    for src in doc_sources():
        lines = src.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", line):
                j = i + 1
                while j < len(lines) and not lines[j].strip():
                    j += 1
                k = j
                while k < len(lines) and lines[k].strip():
                    k += 1
                before = i - 1
                while before >= 0 and not lines[before].strip():
                    before -= 1
                caption = " ".join(lines[j:k]) + " " + (lines[before] if before >= 0 else "")
                out.append((src, i + 1, caption, (src.parent / target).resolve()))
    return out


def test_every_picture_exists_and_names_the_command_that_drew_it():
    pictures = _pictures()
    assert len(pictures) >= 4
    for src, line, caption, path in pictures:
        where = f"{src.relative_to(ROOT)}:{line}"
        assert path.is_file(), f"{where}: {path} does not exist"
        assert re.search(r"`(r2bench|python) [^`]+`", caption), \
            f"{where}: the text next to the picture must name the command that drew it, as `r2bench ...` or `python ...`"


def test_every_picture_in_docs_img_is_used():
    used = {path for _, _, _, path in _pictures()}
    unused = [p.name for p in sorted((DOCS / "img").glob("*")) if p.resolve() not in used]
    assert not unused, f"pictures no page shows (remove them or use them): {unused}"


def test_the_readme_picture_is_the_committed_board_chart():
    """docs/img/leaderboard-movielens-100k.png is the chart in leaderboards/movielens-100k/index.html: when an
    entry is added and the board re-rendered, redraw it with the command the README names."""
    html = (ROOT / "leaderboards" / "movielens-100k" / "index.html").read_text(encoding="utf-8")
    embedded = base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1))
    assert (DOCS / "img" / "leaderboard-movielens-100k.png").read_bytes() == embedded, (
        "docs/img/leaderboard-movielens-100k.png is not the board's current chart: run "
        "`python scripts/board_png.py leaderboards/movielens-100k docs/img/leaderboard-movielens-100k.png`")


def _handwritten_docs() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in [README, *sorted(DOCS.rglob("*.md"))])


def test_the_docs_name_every_method_dataset_analysis_and_command():
    from r2bench.analyses.registry import ANALYSES
    from r2bench.cli import _command_modules
    from r2bench.data.registry import DATASETS
    from r2bench.methods import METHODS

    text = _handwritten_docs()
    analyses = (DOCS / "analyses.md").read_text(encoding="utf-8")
    benchmarks = (DOCS / "benchmarks" / "index.md").read_text(encoding="utf-8")
    missing = [f"method {m}" for m in METHODS.in_order(entry_points=False) if f"`{m}`" not in text
               and f"--method {m}" not in text]
    missing += [f"dataset {d} (docs/benchmarks/index.md)" for d in DATASETS.in_order(entry_points=False)
                if f"`{d}`" not in benchmarks]
    missing += [f"analysis {a} (docs/analyses.md)" for a in ANALYSES.in_order(entry_points=False)
                if f"`{a}`" not in analyses]
    missing += [f"command r2bench {v}" for v, _ in _command_modules() if f"r2bench {v}" not in text]
    assert not missing, "not documented anywhere in README.md or docs/:\n" + "\n".join(missing)
