"""The analyses, by name: entries of the project's registry (:class:`r2bench.registry.Registry`).

Each entry points lazily at an :class:`~r2bench.analyses.base.Analysis` in its own
module, so listing the names (``r2bench analyze --help``) imports none of them. The
order of registration is the order of ``r2bench study``'s report and of
``report --analyses``. Analyses from other packages register through the
``r2bench.analyses`` entry-point group, or at run time with
``ANALYSES.register(name, "package.module:ANALYSIS", description)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from r2bench.errors import R2BenchError
from r2bench.registry import Registry

if TYPE_CHECKING:
    from r2bench.analyses.base import Analysis

ANALYSES: Registry = Registry("analysis", entry_point_group="r2bench.analyses")

_R = ANALYSES.register
_R("cold-start", "r2bench.analyses.cold_start:ANALYSIS", "quality by how often the target item was a train positive")
_R("history-length", "r2bench.analyses.history_length:ANALYSIS", "quality by the number of history items")
_R("position", "r2bench.analyses.position:ANALYSIS", "the target moved through the candidate list: position bias")
_R("history-shuffle", "r2bench.analyses.history_shuffle:ANALYSIS", "seeded permutations of every history")
_R("truncation", "r2bench.analyses.truncation:ANALYSIS", "only the k most recent history items kept")
_R("candidate-shuffle", "r2bench.analyses.candidate_shuffle:ANALYSIS",
   "candidate lists shuffled: permutation invariance")
_R("transfer", "r2bench.analyses.transfer:ANALYSIS", "fit on one dataset, score another: the transfer matrix")
del _R


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
