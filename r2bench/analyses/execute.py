"""Producing the runs the perturbation analyses need, through ``r2bench.pipeline.run_method``.

A :class:`MethodRunner` fits a method **once** per training benchmark and reuses the
fitted model for the original run and every perturbed copy of the instances (the
perturbations never touch training data), so a study costs one fit per method plus
one scoring pass per perturbation. Every run is a normal run folder whose
``run.json`` records the perturbation spec (see :mod:`r2bench.analyses.perturb`) and,
for runs that score a chosen sample, the ids of the instances scored.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from r2bench.analyses import perturb as P
from r2bench.data.benchmark import Benchmark

Transform = Callable[[pl.DataFrame, dict[str, Any]], pl.DataFrame]
Select = Callable[[pl.DataFrame, dict[str, Any], int | None], tuple[dict[str, Any], list[int] | None]]


class FitOnce:
    """Wraps a built method so ``fit`` runs once per training benchmark (by fingerprint).

    It looks like the method to ``run_method`` (``name``, ``config``, ``transferable``,
    ``pointwise``, ``score``, ``artifacts``, ``info``); runs after the first one record
    in ``info`` which run's fit they reused.
    """

    def __init__(self, name: str, model: Any):
        self.name = name
        self.model = model
        self.config = getattr(model, "config", None)
        self.transferable = getattr(model, "transferable", True)
        self.pointwise = getattr(model, "pointwise", True)
        self.fitted_on: str | None = None
        self.first_run: str | None = None
        self._reused = False

    def fit(self, benchmark: Benchmark) -> None:
        if self.fitted_on == benchmark.fingerprint:
            self._reused = True
            return
        self.model.fit(benchmark)
        self.fitted_on = benchmark.fingerprint
        self._reused = False
        self.first_run = None

    def score(self, benchmark: Benchmark, instances: pl.DataFrame):
        return self.model.score(benchmark, instances)

    def artifacts(self) -> dict[str, pl.DataFrame]:
        return self.model.artifacts() or {}

    def info(self) -> dict[str, Any]:
        info = dict(self.model.info() or {})
        # Recorded so the analyses can check pointwise methods for permutation invariance
        # even when the method is not registered where the analysis runs.
        info.setdefault("method_pointwise", bool(self.pointwise))
        info.setdefault("method_transferable", bool(self.transferable))
        if self._reused and self.first_run:
            info["fit_reused_from"] = self.first_run
        return info


class MethodRunner:
    """Runs of one method on one benchmark: the original and perturbed copies, fit once."""

    def __init__(self, method: str, benchmark: Benchmark, *, split: str = "test", seed: int = 0,
                 overrides: dict[str, Any] | None = None, config_file: str | Path | None = None,
                 out: str | Path | None = None, command: str | None = None):
        from r2bench.pipeline import build_method

        name, model = build_method(method, seed, overrides, config_file)
        self.name = name
        self.wrapped = FitOnce(name, model)
        self.benchmark = benchmark
        self.split = split
        self.seed = seed
        self.out = out
        self.command = command
        self.runs: list[Path] = []

    def _run(self, limit: int | None, spec: dict[str, Any] | None, train_on: Benchmark | None = None,
             transform: Transform | None = None, instance_ids: list[int] | None = None) -> Path:
        from r2bench.pipeline import run_method

        perturb = None
        if spec:
            apply = transform or P.apply_perturbation

            def perturb(instances: pl.DataFrame) -> pl.DataFrame:
                return apply(instances, spec)
        path = run_method(
            self.wrapped, self.benchmark, split=self.split, limit=limit, seed=self.seed, out=self.out,
            train_on=train_on, perturb=perturb, perturbation=spec, command=self.command, instance_ids=instance_ids,
        )
        if self.wrapped.first_run is None:
            self.wrapped.first_run = path.name
        self.runs.append(path)
        return path

    def original(self, limit: int | None = None) -> Path:
        return self._run(limit, None)

    def perturbed(self, spec: dict[str, Any], limit: int | None = None, *, transform: Transform | None = None,
                  select: Select | None = None) -> Path:
        """A run on a perturbed copy of the (first ``limit``) instances.

        ``transform(instances, spec)`` applies the spec (default: the built-in kinds of
        :func:`r2bench.analyses.perturb.apply_perturbation`); ``select(instances, spec,
        limit)`` may instead choose the instances to score (default
        :func:`r2bench.analyses.perturb.select_instances`: truncation specs with a sample
        score only the sample), which the run records.
        """
        spec, ids = (select or P.select_instances)(self.benchmark.split(self.split), spec, limit)
        if ids is not None:
            return self._run(None, spec, transform=transform, instance_ids=ids)
        return self._run(limit, spec, transform=transform)

    def transfer(self, train_on: Benchmark, limit: int | None = None) -> Path:
        """Fit on ``train_on`` and score this runner's benchmark (cross-dataset)."""
        return self._run(limit, None, train_on=train_on)
