"""The run artifact: a method's scores for every candidate of every instance of one split.

A run is a folder ``<out>/<run-id>/`` holding

- ``scores.parquet``: long form ``instance_id`` (int64), ``item_id`` (str), ``score``
  (float64, higher is better);
- ``run.json`` (schema ``r2bench.run/1``): method, full config, seed, dataset,
  benchmark fingerprint and path, split, limit, perturbation, train_on, versions,
  git commit, hardware, timings, the method's ``info()``, creation time, command, and
  ``scored_instance_ids`` when the run scored a chosen subset of the split (rather
  than the whole split or its first ``limit`` instances), so that the evaluator knows
  which instances to expect without knowing how the subset was chosen;
- ``<name>.parquet`` for each table of the method's ``artifacts()`` (e.g. rationales);
- ``metrics.parquet`` once evaluated (``r2bench.eval.evaluate``).

This module is the format only: reading (:func:`load_run`, :class:`Run`), writing
(:func:`write_run`, atomic: the folder appears complete or not at all), naming
(:func:`make_run_id`), expanding folders of runs (:func:`expand_runs`) and display
labels (:func:`run_labels`). It imports nothing above ``r2bench.data``; making runs
is :mod:`r2bench.pipeline`, evaluating them :mod:`r2bench.eval.evaluate`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from r2bench import paths
from r2bench.errors import R2BenchError, RunValidationError

SCHEMA = "r2bench.run/1"
RUN_JSON = "run.json"
SCORES_FILE = "scores.parquet"
METRICS_FILE = "metrics.parquet"
#: table names a method's ``artifacts()`` may not use (they are the run's own files)
RESERVED_TABLES = frozenset({"scores", "metrics", "run"})
#: the columns and types of ``scores.parquet``
SCORE_SCHEMA = {"instance_id": pl.Int64, "item_id": pl.String, "score": pl.Float64}


@dataclass
class Run:
    """A run folder on disk (read-only view; tables load lazily).

    ``display_label`` is the label chosen for this run among others (set by
    :func:`label_runs`); :attr:`label` falls back to :attr:`default_label`.
    """

    path: Path
    meta: dict[str, Any] = field(repr=False)
    display_label: str | None = field(default=None, repr=False, compare=False)

    @property
    def run_id(self) -> str:
        return str(self.meta.get("run_id", self.path.name))

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
    def perturbation(self) -> dict[str, Any] | None:
        """The perturbation spec the run was made under (None for an unperturbed run)."""
        p = self.meta.get("perturbation")
        return p if isinstance(p, dict) and p else None

    @property
    def kind(self) -> str | None:
        """The perturbation's ``kind`` (None for an unperturbed run)."""
        p = self.perturbation
        return p.get("kind") if p else None

    @property
    def train_on(self) -> dict[str, Any] | None:
        """``{dataset, fingerprint, path}`` of the benchmark a transfer run was fitted on (else None)."""
        return self.meta.get("train_on") or None

    @property
    def train_dataset(self) -> str:
        """The dataset the method was fitted on (the scored one unless it is a transfer run)."""
        t = self.train_on
        return str(t.get("dataset")) if t else self.dataset

    @property
    def scored_instance_ids(self) -> list[int] | None:
        """The instance ids a run scored when it scored a chosen subset of its split (else None)."""
        ids = self.meta.get("scored_instance_ids")
        return None if ids is None else [int(i) for i in ids]

    @property
    def default_label(self) -> str:
        """The run's own display name: ``--label`` or the method, plus a marker for
        transfer and perturbed runs."""
        label = self.meta.get("label") or self.method
        if self.meta.get("train_on"):
            label += f" (trained on {self.meta['train_on'].get('dataset')})"
        if self.meta.get("perturbation"):
            p = self.meta["perturbation"]
            label += f" [{p.get('name', 'perturbed') if isinstance(p, dict) else p}]"
        return label

    @property
    def label(self) -> str:
        return self.display_label or self.default_label

    @cached_property
    def scores(self) -> pl.DataFrame:
        f = self.path / SCORES_FILE
        if not f.is_file():
            raise RunValidationError(f"run {self.path}: no {SCORES_FILE}")
        return _int64_ids(pl.read_parquet(f))

    def has_metrics(self) -> bool:
        return (self.path / METRICS_FILE).is_file()

    @cached_property
    def metrics(self) -> pl.DataFrame:
        """Per-instance metrics (``metrics.parquet``); ``r2bench.eval.evaluate.run_metrics``
        evaluates a run that has none yet."""
        f = self.path / METRICS_FILE
        if not f.is_file():
            raise R2BenchError(f"run {self.path} is not evaluated yet: run `r2bench evaluate {self.path}`")
        return _int64_ids(pl.read_parquet(f))

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


def _int64_ids(df: pl.DataFrame) -> pl.DataFrame:
    if "instance_id" in df.columns and df.schema["instance_id"] != pl.Int64:
        return df.with_columns(pl.col("instance_id").cast(pl.Int64))
    return df


def _resolve(p: Path) -> Path:
    """A run folder given as a path, or as a run id under the runs directory."""
    if not (p / RUN_JSON).is_file() and not p.is_absolute() and (paths.runs_dir() / p / RUN_JSON).is_file():
        return paths.runs_dir() / p
    return p


def load_run(path: str | Path) -> Run:
    """Load a run folder, given its path or its run id under the runs directory."""
    p = _resolve(Path(path).expanduser())
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


def expand_runs(items: Iterable[str | Path]) -> list[Path]:
    """Run folders from run folders, run ids (under the runs directory) and folders of runs (one level down)."""
    out: list[Path] = []
    for item in items:
        p = _resolve(Path(item).expanduser())
        if (p / RUN_JSON).is_file():
            out.append(p)
        elif p.is_dir():
            found = sorted(d for d in p.iterdir() if (d / RUN_JSON).is_file())
            if not found:
                raise R2BenchError(f"{p}: neither a run folder nor a folder of runs (no {RUN_JSON})")
            out.extend(found)
        else:
            raise R2BenchError(f"run not found: {p} is not a run folder, a folder of runs or a run id under "
                               f"{paths.runs_dir()}")
    return out


def load_runs(items: Iterable[str | Path]) -> list[Run]:
    """:func:`load_run` of every run :func:`expand_runs` finds; at least one."""
    runs = [load_run(p) for p in expand_runs(items)]
    if not runs:
        raise R2BenchError("no runs given")
    return runs


def run_labels(runs: Sequence[Run], scheme: str = "report") -> list[str]:
    """Display labels of ``runs`` side by side (one per run, in order).

    ``scheme="report"``: each run's :attr:`Run.default_label`; runs sharing one on the
    same dataset get ``(seed S, <last 6 characters of the run id>)`` appended.

    ``scheme="analysis"``: the method; when runs of one method differ in anything but
    their perturbation (config, seed, benchmark, training benchmark), every run of that
    method gets ``[<run id>]`` appended. A run and its perturbed copies therefore share
    a label, which is how the analyses pair them.
    """
    if scheme == "report":
        labels = [r.default_label for r in runs]
        seen: dict[tuple[str, str], int] = {}
        for r, lab in zip(runs, labels):
            seen[(r.dataset, lab)] = seen.get((r.dataset, lab), 0) + 1
        return [f"{lab} (seed {r.meta.get('seed')}, {r.run_id[-6:]})" if seen[(r.dataset, lab)] > 1 else lab
                for r, lab in zip(runs, labels)]
    if scheme == "analysis":
        identities: dict[str, set[str]] = {}
        for r in runs:
            key = json.dumps([r.meta.get("config"), r.meta.get("seed"), r.fingerprint, r.meta.get("train_on")],
                             sort_keys=True, default=str)
            identities.setdefault(r.method, set()).add(key)
        return [r.method if len(identities[r.method]) == 1 else f"{r.method} [{r.run_id}]" for r in runs]
    raise ValueError(f"unknown labelling scheme {scheme!r}; expected 'report' or 'analysis'")


def label_runs(runs: Sequence[Run], scheme: str = "analysis") -> list[Run]:
    """Set :attr:`Run.display_label` from :func:`run_labels` on runs that have none yet; returns ``runs``."""
    for r, lab in zip(runs, run_labels(runs, scheme)):
        if r.display_label is None:
            r.display_label = lab
    return list(runs)


def long_scores(instances: pl.DataFrame, scores: np.ndarray) -> pl.DataFrame:
    """Dense ``[n, K]`` scores aligned with ``instances["candidates"]`` -> the long form."""
    scores = np.asarray(scores, dtype=np.float64)
    n = instances.height
    k = scores.shape[1] if scores.ndim == 2 else 0
    return pl.DataFrame(
        {
            "instance_id": np.repeat(instances["instance_id"].to_numpy().astype(np.int64), k),
            "item_id": instances["candidates"].explode() if n else pl.Series([], dtype=pl.String),
            "score": scores.reshape(-1),
        },
        schema=SCORE_SCHEMA,
    )


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


def check_artifact_names(method: str, artifacts: dict[str, Any]) -> None:
    for key in artifacts:
        if key in RESERVED_TABLES or not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
            raise R2BenchError(f"method {method!r}: artifact name {key!r} is not allowed")


def write_run(out_dir: str | Path, meta: dict[str, Any], instances: pl.DataFrame, scores: np.ndarray,
              artifacts: dict[str, pl.DataFrame] | None = None) -> Path:
    """Write a new run folder under ``out_dir`` atomically and return it.

    ``meta`` is run.json without ``run_id`` (added here, from dataset, method, split
    and a hash of the settings); ``scores`` is dense ``[n, K]``, aligned with
    ``instances["candidates"]``; ``artifacts`` are the method's extra tables.
    """
    from r2bench.atomic import atomic_path, write_json

    artifacts = artifacts or {}
    check_artifact_names(meta["method"], artifacts)
    out_dir = Path(out_dir)
    payload = [meta.get("config"), meta.get("seed"), meta.get("benchmark_fingerprint"), meta.get("limit"),
               meta.get("perturbation")]
    run_id = make_run_id(meta["dataset"], meta["method"], meta["split"], payload)
    while (out_dir / run_id).exists():  # pragma: no cover - astronomically unlikely
        run_id = make_run_id(meta["dataset"], meta["method"], meta["split"], run_id)
    meta = {**meta, "run_id": run_id}
    run_dir = out_dir / run_id
    with atomic_path(run_dir) as tmp:
        tmp.mkdir()
        long_scores(instances, scores).write_parquet(tmp / SCORES_FILE)
        for key, table in artifacts.items():
            table.write_parquet(tmp / f"{key}.parquet")
        write_json(tmp / RUN_JSON, meta)
    return run_dir
