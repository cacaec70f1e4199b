"""The analyses, by name: entries of the project's registry (:class:`r2bench.registry.Registry`).

Built-in analyses are *found*, not listed: every module of this package whose top level
declares ``ANALYSIS = Analysis(name="...", title="...", ..., order=N)`` is registered
under that name, in ascending ``order`` (then name), which is the order of
``r2bench study``'s report and of ``report --analyses``. The modules are read with
``ast`` rather than imported, so listing the names (``r2bench analyze --help``) stays
fast and imports no polars or matplotlib; the module is imported when the analysis is
used. So adding an analysis is adding one module (and its test).

Analyses from other packages register through the ``r2bench.analyses`` entry-point
group, or at run time with ``ANALYSES.register(name, "package.module:ANALYSIS", description)``.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r2bench.errors import R2BenchError
from r2bench.registry import Registry

if TYPE_CHECKING:
    from r2bench.analyses.base import Analysis

ANALYSES: Registry = Registry("analysis", entry_point_group="r2bench.analyses")


def declared_analysis(source: str) -> dict[str, Any] | None:
    """The literal keywords (name, title, order, ...) of a module-level
    ``ANALYSIS = Analysis(...)`` in ``source``, or None when the module declares none."""
    for node in ast.parse(source).body:
        if (isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["ANALYSIS"]
                and isinstance(node.value, ast.Call) and getattr(node.value.func, "id", None) == "Analysis"):
            found = {}
            for kw in node.value.keywords:
                if kw.arg and isinstance(kw.value, ast.Constant):
                    found[kw.arg] = kw.value.value
            return found
    return None


def discover(folder: Path, package: str) -> list[tuple[str, str, str]]:
    """``(name, "package.module:ANALYSIS", title)`` for each analysis module in ``folder``, in order."""
    found = []
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        decl = declared_analysis(path.read_text(encoding="utf-8"))
        if decl is None:
            continue
        if not isinstance(decl.get("name"), str):
            raise R2BenchError(f"{path}: ANALYSIS = Analysis(...) must give its name as a string literal")
        found.append((int(decl.get("order", 100)), decl["name"], f"{package}.{path.stem}:ANALYSIS",
                      str(decl.get("title", ""))))
    return [(name, target, title) for _, name, target, title in sorted(found)]


for _name, _target, _title in discover(Path(__file__).parent, __package__):
    ANALYSES.register(_name, _target, _title)


def get_analysis(name: str) -> "Analysis":
    """The analysis registered under ``name`` (unknown names get a did-you-mean)."""
    from r2bench.analyses.base import Analysis

    entry = ANALYSES.get(name)
    obj = entry.load()
    if not isinstance(obj, Analysis):
        raise R2BenchError(f"analysis {name!r} points at {entry.target}, which is not an r2bench Analysis")
    if obj.name != name:
        raise R2BenchError(f"analysis {name!r} points at {entry.target}, which declares the name {obj.name!r}")
    return obj


def all_analyses() -> "list[Analysis]":
    """Every registered analysis, in registration order."""
    return [get_analysis(n) for n in ANALYSES.in_order()]
