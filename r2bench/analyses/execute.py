"""Producing the runs the perturbation analyses need, through ``r2bench.runs.run_method``.

A :class:`MethodRunner` fits a method **once** per training benchmark and reuses the
fitted model for the original run and every perturbed copy of the instances (the
perturbations never touch training data), so a study costs one fit per method plus
one scoring pass per perturbation. Every run is a normal run folder whose
``run.json`` records the perturbation spec (see :mod:`r2bench.analyses.perturb`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from r2bench.analyses import perturb as P
from r2bench.data.benchmark import Benchmark


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


class SubsetBenchmark(Benchmark):
    """A benchmark view whose ``split(name)`` holds only the given instance ids.

    Used for the truncation analysis, which scores a fixed sample of full-length
    histories: ``run_method`` scores and evaluates exactly that sample. Fingerprint,
    path and tables are the base benchmark's (loaded tables are shared, not re-read).
    """

    def __init__(self, base: Benchmark, split_name: str, instance_ids: list[int]):
        super().__init__(path=base.path, manifest=base.manifest)
        self.__dict__.update({k: v for k, v in base.__dict__.items() if k not in ("path", "manifest")})
        self._subset_split = split_name
        self._subset_ids = sorted(int(i) for i in instance_ids)

    def split(self, name: str) -> pl.DataFrame:
        df = super().split(name)
        if name == self._subset_split:
            df = df.filter(pl.col("instance_id").is_in(self._subset_ids))
        return df


class MethodRunner:
    """Runs of one method on one benchmark: the original and perturbed copies, fit once."""

    def __init__(self, method: str, benchmark: Benchmark, *, split: str = "test", seed: int = 0,
                 overrides: dict[str, Any] | None = None, config_file: str | Path | None = None,
                 out: str | Path | None = None, command: str | None = None):
        from r2bench.runs import build_method

        name, model = build_method(method, seed, overrides, config_file)
        self.name = name
        self.wrapped = FitOnce(name, model)
        self.benchmark = benchmark
        self.split = split
        self.seed = seed
        self.out = out
        self.command = command
        self.runs: list[Path] = []

    def _run(self, dataset: Benchmark, limit: int | None, spec: dict[str, Any] | None,
             train_on: Benchmark | None = None) -> Path:
        from r2bench.runs import run_method

        path = run_method(
            self.wrapped, dataset, split=self.split, limit=limit, seed=self.seed, out=self.out,
            train_on=train_on, perturb=P.perturbation_fn(spec) if spec else None, perturbation=spec,
            command=self.command,
        )
        if self.wrapped.first_run is None:
            self.wrapped.first_run = path.name
        self.runs.append(path)
        return path

    def original(self, limit: int | None = None) -> Path:
        return self._run(self.benchmark, limit, None)

    def perturbed(self, spec: dict[str, Any], limit: int | None = None) -> Path:
        """A run on a perturbed copy of the (first ``limit``) instances.

        Truncation specs with a sample score only the sample: it is drawn from the
        first ``limit`` instances (all when None) and recorded in the spec
        (``sample.pool_limit``), so the same spec always names the same instances.
        """
        if spec.get("kind") == "history_truncate" and spec.get("sample"):
            spec = dict(spec, sample=dict(spec["sample"], pool_limit=limit))
            chosen = P.scored_instances(self.benchmark.split(self.split), spec)
            subset = SubsetBenchmark(self.benchmark, self.split, chosen["instance_id"].to_list())
            return self._run(subset, None, spec)
        return self._run(self.benchmark, limit, spec)

    def transfer(self, train_on: Benchmark, limit: int | None = None) -> Path:
        """Fit on ``train_on`` and score this runner's benchmark (cross-dataset)."""
        return self._run(self.benchmark, limit, None, train_on=train_on)


def perturbation_plan(analyses: list[str], positions=(1, 10, 20), n_shuffles: int = 5, ks=(1, 5, 10, 15, 20),
                      sample_n: int | None = 100, full_length: int = 20, seed: int = 0,
                      n_candidate_shuffles: int = 1) -> list[dict[str, Any]]:
    """The perturbation specs the named analyses need (the original run is always made too)."""
    specs: list[dict[str, Any]] = []
    for name in analyses:
        if name == "position":
            specs += [P.target_position_spec(p) for p in positions]
        elif name == "history-shuffle":
            specs += [P.history_shuffle_spec(seed + i) for i in range(n_shuffles)]
        elif name == "truncation":
            specs += [P.history_truncate_spec(k, sample_n, full_length, seed) for k in sorted(ks)]
        elif name == "candidate-shuffle":
            specs += [P.candidate_shuffle_spec(seed + i) for i in range(n_candidate_shuffles)]
    return specs
