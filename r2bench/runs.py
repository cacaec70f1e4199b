"""Runs: a method's scores for every candidate of every instance of one split.

``run_method`` builds a method from the registry, fits it, scores a split and writes
``<out>/<run-id>/``:

- ``scores.parquet``: long form ``instance_id`` (int64), ``item_id`` (str), ``score``
  (float64, higher is better);
- ``run.json`` (schema ``r2bench.run/1``): method, full config, seed, dataset,
  benchmark fingerprint and path, split, limit, perturbation, train_on, versions,
  git commit, hardware, timings, the method's ``info()``, creation time, command;
- ``<name>.parquet`` for each table of the method's ``artifacts()`` (e.g. rationales);
- ``metrics.parquet`` once evaluated (``run_method`` evaluates by default).

The folder appears atomically, complete or not at all. ``load_run`` reads one back.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from r2bench import __version__, paths
from r2bench.errors import R2BenchError, RunValidationError

SCHEMA = "r2bench.run/1"
RUN_JSON = "run.json"
SCORES_FILE = "scores.parquet"
METRICS_FILE = "metrics.parquet"
_RESERVED = {"scores", "metrics", "run"}


@dataclass
class Run:
    """A run folder on disk (read-only view; tables load lazily)."""

    path: Path
    meta: dict[str, Any] = field(repr=False)

    @property
    def run_id(self) -> str:
        return self.meta.get("run_id", self.path.name)

    @property
    def method(self) -> str:
        return self.meta["method"]

    @property
    def dataset(self) -> str:
        return self.meta["dataset"]

    @property
    def fingerprint(self) -> str:
        return self.meta["benchmark_fingerprint"]

    @property
    def split(self) -> str:
        return self.meta.get("split", "test")

    @property
    def limit(self) -> int | None:
        return self.meta.get("limit")

    @property
    def info(self) -> dict[str, Any]:
        return self.meta.get("info") or {}

    @property
    def label(self) -> str:
        """A short display name: the method, plus a marker for perturbed or transfer runs."""
        label = self.meta.get("label") or self.method
        if self.meta.get("train_on"):
            label += f" (trained on {self.meta['train_on'].get('dataset')})"
        if self.meta.get("perturbation"):
            p = self.meta["perturbation"]
            label += f" [{p.get('name', 'perturbed') if isinstance(p, dict) else p}]"
        return label

    @cached_property
    def scores(self) -> pl.DataFrame:
        f = self.path / SCORES_FILE
        if not f.is_file():
            raise RunValidationError(f"run {self.path}: no {SCORES_FILE}")
        return pl.read_parquet(f)

    def has_metrics(self) -> bool:
        return (self.path / METRICS_FILE).is_file()

    def metrics(self, evaluate: bool = True) -> pl.DataFrame:
        """Per-instance metrics; evaluates the run first when they are missing (and ``evaluate``)."""
        f = self.path / METRICS_FILE
        if not f.is_file():
            if not evaluate:
                raise R2BenchError(f"run {self.path} is not evaluated yet: run `r2bench evaluate {self.path}`")
            from r2bench.eval.evaluate import evaluate_run

            return evaluate_run(self.path)
        return pl.read_parquet(f)

    def table(self, name: str) -> pl.DataFrame:
        """An extra table stored by the method (e.g. ``rationales``)."""
        f = self.path / f"{name}.parquet"
        if not f.is_file():
            raise R2BenchError(f"run {self.path} has no {name}.parquet")
        return pl.read_parquet(f)

    def benchmark(self):
        """The benchmark this run was made on (its recorded path, else by dataset + fingerprint)."""
        from r2bench.data.benchmark import load_benchmark

        recorded = self.meta.get("benchmark_path")
        if recorded and (Path(recorded) / "manifest.json").is_file():
            bench = load_benchmark(recorded)
            if bench.fingerprint == self.fingerprint:
                return bench
        try:
            return load_benchmark(self.dataset, fingerprint=self.fingerprint)
        except R2BenchError as exc:
            raise R2BenchError(
                f"run {self.path}: cannot find its benchmark {self.dataset} [{str(self.fingerprint)[:12]}] "
                f"(recorded at {recorded}): {exc}; prepare it with the spec in the run's benchmark record and "
                f"check it with `r2bench verify {self.dataset}`"
            ) from None


def load_run(path: str | Path) -> Run:
    """Load a run folder, given its path or its run id under the runs directory."""
    p = Path(path).expanduser()
    if not (p / RUN_JSON).is_file() and not p.is_absolute() and (paths.runs_dir() / p / RUN_JSON).is_file():
        p = paths.runs_dir() / p
    f = p / RUN_JSON
    if not f.is_file():
        raise R2BenchError(f"{p} is not a run folder (no {RUN_JSON})")
    try:
        meta = json.loads(f.read_text())
    except json.JSONDecodeError as exc:
        raise R2BenchError(f"{f}: corrupt run.json ({exc})") from None
    for key in ("method", "dataset", "benchmark_fingerprint"):
        if key not in meta:
            raise R2BenchError(f"{f}: missing {key!r}")
    return Run(path=p, meta=meta)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def make_run_id(dataset: str, method: str, split: str, payload: Any) -> str:
    """``<dataset>-<method>-<split>-<UTC timestamp>-<6 hex>``, the hash over the run's
    settings plus time and pid so that two runs started in the same second differ."""
    now = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    h = hashlib.sha256(
        json.dumps([payload, time.time_ns(), os.getpid(), random.random()], default=str, sort_keys=True).encode()
    ).hexdigest()[:6]
    return f"{_slug(dataset)}-{_slug(method)}-{split}-{now}-{h}"


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


def _as_benchmark(dataset: Any):
    from r2bench.data.benchmark import Benchmark, load_benchmark

    return dataset if isinstance(dataset, Benchmark) else load_benchmark(dataset)


def build_method(method: Any, seed: int = 0, overrides: dict[str, Any] | None = None,
                 config_file: str | Path | None = None):
    """A method instance from a registered name (config from defaults, file, overrides),
    or the given instance unchanged. Returns ``(name, instance)``."""
    from r2bench.config import build_config
    from r2bench.methods import method_class

    if not isinstance(method, str):
        if overrides or config_file:
            raise R2BenchError("config overrides apply to a method name, not to a built method instance")
        return (getattr(method, "name", "") or type(method).__name__), method
    cls = method_class(method)
    config = build_config(cls.Config, overrides, config_file)
    return method, cls(config, seed)


def run_method(
    method: Any,
    dataset: Any,
    split: str = "test",
    limit: int | None = None,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    config_file: str | Path | None = None,
    out: str | Path | None = None,
    train_on: Any = None,
    perturb: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
    perturbation: dict[str, Any] | None = None,
    *,
    evaluate: bool = True,
    command: str | None = None,
    label: str | None = None,
) -> Path:
    """Fit ``method`` and score ``split`` of ``dataset``; write the run and return its folder.

    ``method``: a registered name (or an already built method instance). ``dataset`` /
    ``train_on``: a dataset name, benchmark folder or ``Benchmark``; with ``train_on``
    the method is fitted on that benchmark and scores ``dataset`` (cross-dataset
    transfer). ``limit``: score only the first N instances by instance_id. ``perturb``:
    applied to the instances frame before scoring (e.g. reorder candidates or history);
    ``perturbation`` is recorded in run.json (defaults to the callable's name). ``out``:
    the folder under which ``<run-id>/`` is created (default ``./runs`` or
    ``$R2BENCH_RUNS``).
    """
    from r2bench.atomic import atomic_path, write_json
    from r2bench.config import config_to_dict
    from r2bench.eval.validate import long_scores
    from r2bench.provenance import git_commit, hardware, package_versions

    if limit is not None and int(limit) < 1:
        raise R2BenchError(f"--limit must be a positive number of instances, got {limit}")
    t_start = time.perf_counter()
    bench = _as_benchmark(dataset)
    name, model = build_method(method, seed, overrides, config_file)
    instances = bench.split(split)
    if limit is not None:
        instances = instances.head(int(limit))
    if instances.height == 0:
        raise R2BenchError(f"{bench.name} [{bench.fingerprint[:12]}] has no {split!r} instances")

    fit_bench = bench
    train_rec = None
    if train_on is not None:
        fit_bench = _as_benchmark(train_on)
        if not getattr(model, "transferable", True):
            raise R2BenchError(f"method {name!r} cannot be fitted on one dataset and scored on another")
        from r2bench.analyses.transfer import transfer_problem

        why = transfer_problem(model, fit_bench, bench, split)
        if why:
            raise R2BenchError(why)
        train_rec = {"dataset": fit_bench.name, "fingerprint": fit_bench.fingerprint, "path": str(fit_bench.path)}

    if perturb is not None:
        ids = instances["instance_id"]
        instances = perturb(instances).sort("instance_id")
        if not instances["instance_id"].equals(ids):
            raise R2BenchError("the perturbation must keep the same instances (instance_id)")
        perturbation = perturbation or {"name": getattr(perturb, "__name__", "perturbation")}

    _seed_everything(seed)
    t0 = time.perf_counter()
    model.fit(fit_bench)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    dense = np.asarray(model.score(bench, instances), dtype=np.float64)
    score_s = time.perf_counter() - t0
    k = instances["candidates"].list.len()
    if dense.shape != (instances.height, int(k.max())) or int(k.min()) != int(k.max()):
        raise R2BenchError(
            f"method {name!r} returned scores of shape {dense.shape}; expected ({instances.height}, {int(k.max())})"
        )
    if not np.isfinite(dense).all():
        bad = instances["instance_id"].filter(pl.Series(~np.isfinite(dense).all(axis=1)))
        raise R2BenchError(f"method {name!r} returned non-finite scores for instance(s) {bad.head(5).to_list()}")

    artifacts = model.artifacts() or {}
    for key in artifacts:
        if key in _RESERVED or not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
            raise R2BenchError(f"method {name!r}: artifact name {key!r} is not allowed")
    config = getattr(model, "config", None)
    meta = {
        "schema": SCHEMA,
        "method": name,
        "label": label,
        "config": config_to_dict(config) if config is not None else {},
        "seed": seed,
        "dataset": bench.name,
        "benchmark_fingerprint": bench.fingerprint,
        "benchmark_path": str(Path(bench.path).resolve()),
        "split": split,
        "limit": int(limit) if limit is not None else None,
        "n_instances": instances.height,
        "perturbation": perturbation,
        "train_on": train_rec,
        "r2bench_version": __version__,
        "git_commit": git_commit(),
        "versions": package_versions(),
        "hardware": hardware(),
        "timings": {"fit_s": round(fit_s, 4), "score_s": round(score_s, 4),
                    "total_s": round(time.perf_counter() - t_start, 4)},
        "info": model.info() or {},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command or f"r2bench.runs.run_method({name!r}, {bench.name!r}, split={split!r}, "
                              f"limit={limit!r}, seed={seed!r}, overrides={overrides!r})",
    }
    out_dir = Path(out) if out is not None else paths.runs_dir()
    run_id = make_run_id(bench.name, name, split, [meta["config"], seed, bench.fingerprint, limit, perturbation])
    while (out_dir / run_id).exists():  # pragma: no cover - astronomically unlikely
        run_id = make_run_id(bench.name, name, split, run_id)
    meta["run_id"] = run_id
    run_dir = out_dir / run_id
    with atomic_path(run_dir) as tmp:
        tmp.mkdir()
        long_scores(instances, dense).write_parquet(tmp / SCORES_FILE)
        for key, table in artifacts.items():
            table.write_parquet(tmp / f"{key}.parquet")
        write_json(tmp / RUN_JSON, meta)
    if evaluate:
        from r2bench.eval.evaluate import evaluate_run

        evaluate_run(run_dir, benchmark=bench)
    return run_dir
