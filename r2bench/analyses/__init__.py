"""Analyses that show *where* a method wins and whether its output depends on things that should not matter.

Each analysis is one module declaring an :class:`~r2bench.analyses.base.Analysis` and
registered in :data:`~r2bench.analyses.registry.ANALYSES` (the project's registry):

- from existing runs: item cold-start (:mod:`~r2bench.analyses.cold_start`) and history
  length (:mod:`~r2bench.analyses.history_length`), on groups of instances
  (:mod:`~r2bench.analyses.strata`, :mod:`~r2bench.analyses.stratified`);
- from new runs on perturbed instances (the spec recorded in ``run.json``): target
  position (:mod:`~r2bench.analyses.position`), candidate shuffling
  (:mod:`~r2bench.analyses.candidate_shuffle`), history shuffling and truncation
  (:mod:`~r2bench.analyses.history_shuffle`, :mod:`~r2bench.analyses.truncation`); the
  transforms are pure functions in :mod:`~r2bench.analyses.perturb`;
- cross-dataset transfer matrix (:mod:`~r2bench.analyses.transfer`).

:mod:`~r2bench.analyses.suite` makes the runs an analysis needs and runs it by name,
:mod:`~r2bench.analyses.study` runs a whole study and writes the report. Plots are in
:mod:`~r2bench.analyses.plots`.
"""

from r2bench.analyses.registry import ANALYSES

__all__ = ["ANALYSES", "Options", "analyze_runs", "report_sections"]


def __getattr__(name: str):
    """Lazy re-exports, so importing the package (e.g. for ANALYSES) stays light."""
    if name in ("Options", "analyze_runs", "report_sections"):
        from r2bench.analyses import suite

        return getattr(suite, name)
    raise AttributeError(name)
