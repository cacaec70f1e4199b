"""Analyses that show *where* a method wins and whether its output depends on things that should not matter.

- stratified (from existing runs): item cold-start bins and groups, history length
  (:mod:`~r2bench.analyses.stratified`, bins in :mod:`~r2bench.analyses.strata`);
- perturbation (new runs on perturbed instances, recorded in ``run.json``): target
  position, candidate shuffling (:mod:`~r2bench.analyses.order`), history shuffling and
  truncation (:mod:`~r2bench.analyses.history`); the transforms are pure functions in
  :mod:`~r2bench.analyses.perturb`;
- cross-dataset transfer matrix (:mod:`~r2bench.analyses.transfer`).

:mod:`~r2bench.analyses.suite` runs them by name, :mod:`~r2bench.analyses.study` runs a
whole study and writes the report. Plots are in :mod:`~r2bench.analyses.plots`.
"""

from r2bench.analyses.names import ANALYSES

__all__ = ["ANALYSES", "Options", "analyze_runs", "report_sections"]


def __getattr__(name: str):
    """Lazy re-exports, so importing the package (e.g. for ANALYSES) stays light."""
    if name in ("Options", "analyze_runs", "report_sections"):
        from r2bench.analyses import suite

        return getattr(suite, name)
    raise AttributeError(name)
