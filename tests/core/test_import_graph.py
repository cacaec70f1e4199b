"""The import graph of ``r2bench/`` and ``baselines/``, read from the source with ``ast``: no cycles, layers kept.

The layers (:data:`LAYERS`, lowest first) are the README's "Architecture"; a module may
import from its own layer and the ones below, and nothing may form a cycle.

What counts as an import: every ``import`` / ``from ... import`` statement anywhere in a
file, at module level, inside functions and under ``if TYPE_CHECKING:`` alike (a lazy
import still ties two modules together; only the cost of importing moves). What does
not count: string targets loaded at run time (the registries' ``"module:attr"``
entries, ``importlib.import_module`` of command modules), which is how the CLI and
the registries list things without importing them.

``from package import name`` is an edge to ``package.name`` when that is a module, else
to the package itself (its ``__init__``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("r2bench", "baselines")


def modules(root: Path, packages=PACKAGES) -> dict[str, Path]:
    out = {}
    for pkg in packages:
        for f in sorted((root / pkg).rglob("*.py")):
            parts = list(f.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def import_graph(root: Path, packages=PACKAGES) -> dict[str, dict[str, list[str]]]:
    """module -> {imported module -> ["file:line", ...]} for imports between the given packages."""
    mods = modules(root, packages)

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, list[str]]] = {m: {} for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [resolve(a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package
                    for _ in range(node.level - 1):
                        up = up.rpartition(".")[0]
                    base = f"{up}.{base}" if base else up
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else resolve(base) for a in node.names]
            where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
            for t in targets:
                if t and t != mod and where not in graph[mod].get(t, []):
                    graph[mod].setdefault(t, []).append(where)
    return graph


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(graph[w])))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def describe(graph, comp: list[str]) -> str:
    inside = set(comp)
    lines = [f"cycle among {', '.join(comp)}:"]
    for m in comp:
        for t, where in sorted(graph[m].items()):
            if t in inside:
                lines.append(f"  {m} -> {t} ({', '.join(where)})")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def graph():
    return import_graph(ROOT)


def test_the_checker_sees_lazy_relative_and_type_checking_imports(tmp_path):
    """A planted package with a cycle through a function-level import, a relative import
    and a TYPE_CHECKING import: the checker must report exactly that cycle."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.sub import b\n    return b\n")
    (pkg / "sub" / "b.py").write_text("from . import c\n")
    (pkg / "sub" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n")
    (pkg / "d.py").write_text("import pkg.a\n")  # into the cycle, not part of it
    g = import_graph(tmp_path, ("pkg",))
    assert g["pkg.a"] == {"pkg.sub.b": ["pkg/a.py:2"]}
    assert cycles(g) == [["pkg.a", "pkg.sub.b", "pkg.sub.c"]]
    (pkg / "sub" / "c.py").write_text("")
    assert cycles(import_graph(tmp_path, ("pkg",))) == []


def test_no_import_cycles(graph):
    assert len(graph) > 100  # every module of r2bench/ and baselines/ was read
    found = cycles(graph)
    assert not found, "\n".join(describe(graph, c) for c in found)


def test_eval_does_not_import_analyses_report_or_leaderboard(graph):
    bad = [f"{m} -> {t} ({', '.join(w)})" for m, deps in graph.items() if m.startswith("r2bench.eval")
           for t, w in deps.items() if t.startswith(("r2bench.analyses", "r2bench.report", "r2bench.leaderboard"))]
    assert not bad, "eval/ must not know about analyses, reports or leaderboards:\n" + "\n".join(bad)


#: lowest first; a module may import from its own layer and the ones below (README, "Architecture")
LAYERS = (
    ("shared leaves", ("r2bench.errors", "r2bench.paths", "r2bench.atomic", "r2bench.version", "r2bench.stablehash",
                       "r2bench.answer", "r2bench.registry", "r2bench.config", "r2bench.progress",
                       "r2bench.provenance", "r2bench.extras")),
    ("data", ("r2bench.data",)),
    ("run format", ("r2bench.runs",)),
    ("evaluation", ("r2bench.eval",)),
    ("shared LLM layer", ("r2bench.lm",)),  # below r2rank/ and baselines/: what every LLM method shares
    ("making runs, methods", ("r2bench.pipeline", "r2bench.methods", "baselines", "r2bench.llm", "r2bench.r2rank")),
    ("reports, analyses, boards", ("r2bench.report", "r2bench.analyses", "r2bench.leaderboard")),
    ("command line", ("r2bench.commands", "r2bench.cli", "r2bench.__main__")),
    ("package facade", ("r2bench",)),  # r2bench/__init__.py: lazy re-exports of the stage functions
)


def layer_of(module: str) -> int:
    best = (-1, -1)  # (length of the longest matching prefix, layer)
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best[0]:
                best = (len(p), i)
    return best[1]


def test_every_module_has_a_layer_and_imports_only_downwards(graph):
    assert not [m for m in graph if layer_of(m) < 0], "modules without a layer (add them to LAYERS)"
    bad = [f"{m} ({LAYERS[layer_of(m)][0]}) -> {t} ({LAYERS[layer_of(t)][0]}) at {', '.join(w)}"
           for m, deps in graph.items() for t, w in deps.items() if layer_of(t) > layer_of(m)]
    assert not bad, "imports that go up a layer:\n" + "\n".join(bad)


def test_the_run_artifact_imports_nothing_above_data(graph):
    bad = [f"{t} ({', '.join(w)})" for t, w in graph["r2bench.runs"].items() if layer_of(t) > layer_of("r2bench.data")]
    assert not bad, "r2bench.runs (the run format) imports above data/:\n" + "\n".join(bad)


def test_shared_contracts_sit_below_their_users(graph):
    """The answer format and the stable hash are leaves that llm/, r2rank/ and data/ import."""
    for leaf in ("r2bench.answer", "r2bench.stablehash", "r2bench.version"):
        assert graph[leaf] == {}, f"{leaf} should import nothing from r2bench: {graph[leaf]}"
    assert "r2bench.answer" in graph["r2bench.llm.parse"] and "r2bench.answer" in graph["r2bench.lm.prompts"]
    assert not any(t.startswith("r2bench.r2rank") for t in graph["r2bench.llm.parse"])


def test_baselines_import_nothing_from_r2rank(graph):
    """Baselines (TALLRec, the API baselines, Prompt4NR, R2ec...) sit beside R2Rank, on the shared LLM
    layer ``r2bench.lm``: a baseline never imports R2Rank's own code (its head, losses, RL step)."""
    assert any(t.startswith("r2bench.lm") for t in graph["baselines.tallrec"])  # the rule has something to check
    bad = [f"{m} -> {t} ({', '.join(w)})" for m, deps in graph.items() if m == "baselines" or m.startswith("baselines.")
           for t, w in deps.items() if t == "r2bench.r2rank" or t.startswith("r2bench.r2rank.")]
    assert not bad, "baselines/ imports r2bench.r2rank (move what it needs into r2bench.lm):\n" + "\n".join(bad)


def test_the_shared_llm_layer_imports_no_method(graph):
    """``r2bench.lm`` is below every method: it imports neither R2Rank, nor a baseline, nor the method registry."""
    assert len([m for m in graph if m.startswith("r2bench.lm")]) >= 6
    bad = [f"{m} -> {t} ({', '.join(w)})" for m, deps in graph.items() if m.startswith("r2bench.lm")
           for t, w in deps.items() if t.startswith(("r2bench.r2rank", "baselines", "r2bench.methods", "r2bench.pipeline"))]
    assert not bad, "r2bench.lm imports a method:\n" + "\n".join(bad)
