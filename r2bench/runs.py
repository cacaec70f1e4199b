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
labels (:func:`run_labels`), and what makes runs comparable (:func:`comparison_key`: the
same benchmark, split and set of scored instances). It imports nothing above
``r2bench.data``; making runs is :mod:`r2bench.pipeline`, evaluating them
:mod:`r2bench.eval.evaluate`.
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
    def created_at(self) -> str:
        return str(self.meta.get("created_at") or "")

    @property
    def created_order(self) -> tuple[datetime, str]:
        """A key that orders runs by creation time (ISO times of any precision; unknown = oldest), then id."""
        try:
            when = datetime.fromisoformat(self.created_at)
        except ValueError:
            when = datetime.min
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return when, self.run_id

    @property
    def config_changes(self) -> dict[str, Any] | None:
        """The config keys whose value differs from the method's defaults (recorded by the
        pipeline when the run was made; None for runs made before it recorded them)."""
        changes = self.meta.get("config_changes")
        return dict(changes) if isinstance(changes, dict) else None

    @property
    def base_label(self) -> str:
        """``--label``, else the method plus the config keys that differ from its defaults
        (``item-cooccurrence window=3``), plus ``(trained on D)`` for a transfer run."""
        label = self.meta.get("label") or describe_config(self.method, self.config_changes or {})
        if self.train_on:
            label += f" (trained on {self.train_on.get('dataset')})"
        return label

    @property
    def default_label(self) -> str:
        """The run's name when shown alone: :attr:`base_label`, plus ``[<perturbation>]``."""
        label = self.base_label
        p = self.meta.get("perturbation")
        if p:
            label += f" [{p.get('name') or p.get('kind') or 'perturbed' if isinstance(p, dict) else p}]"
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

    @cached_property
    def instance_ids(self) -> tuple[int, ...]:
        """The ids of the instances the run scored, sorted (from ``scores.parquet``)."""
        f = self.path / SCORES_FILE
        if not f.is_file():
            raise RunValidationError(f"run {self.path}: no {SCORES_FILE}")
        ids = pl.read_parquet(f, columns=["instance_id"])["instance_id"].unique().sort()
        return tuple(int(i) for i in ids.to_list())

    @cached_property
    def instance_set(self) -> str:
        """A 12-hex digest of :attr:`instance_ids`: runs compare only on equal sets."""
        return hashlib.sha256(",".join(map(str, self.instance_ids)).encode()).hexdigest()[:12]

    @cached_property
    def scores_digest(self) -> str:
        """A digest of the scores (sorted by instance and item): equal digests, identical runs."""
        s = self.scores.sort("instance_id", "item_id")
        h = hashlib.sha256()
        h.update(s["instance_id"].to_numpy().astype(np.int64).tobytes())
        h.update("\x1f".join(s["item_id"].to_list()).encode())
        h.update(s["score"].to_numpy().astype(np.float64).tobytes())
        return h.hexdigest()

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
    if not p.exists():
        raise R2BenchError(f"no such run: {path} is neither a folder nor a run id under {paths.runs_dir()}")
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


#: config keys that change how a method runs but never its scores (left out of labels)
OPERATIONAL_KEYS = frozenset({
    "concurrency", "timeout_s", "max_retries", "backoff_base_s", "backoff_max_s", "max_retry_after_s",
    "cache", "cache_path", "api_key_env", "threads", "price_input_per_1m", "price_output_per_1m",
    "instances_per_batch",  # r2rank: how many instances share a decoding batch (same scores to 1e-4)
    "save_to", "checkpoint_every",  # trainable baselines: where fit writes its model and how often it checkpoints
    "score_batch", "item_batch",  # candidates / item prompts per forward pass (same scores up to float rounding)
})


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def describe_config(method: str, changes: dict[str, Any]) -> str:
    """``method key=value ...`` for the config keys that differ from the defaults (in run.json's key order)."""
    parts = [f"{k}={_value_text(v)}" for k, v in changes.items() if k not in OPERATIONAL_KEYS]
    return " ".join([method, *parts])


def comparison_key(run: Run) -> tuple[str, str, str, str]:
    """(dataset, fingerprint, split, instance set): runs compare only when these are equal."""
    return (run.dataset, run.fingerprint, run.split, run.instance_set)


def _peer_changes(runs: Sequence[Run]) -> dict[int, dict[str, Any]]:
    """For runs that recorded no ``config_changes``: the config keys whose values differ
    among the runs of the same method here (the method's defaults are not known)."""
    by_method: dict[str, list[int]] = {}
    for i, r in enumerate(runs):
        if r.config_changes is None:
            by_method.setdefault(r.method, []).append(i)
    out: dict[int, dict[str, Any]] = {}
    for idxs in by_method.values():
        configs = [runs[i].meta.get("config") or {} for i in idxs]
        keys = [k for k in dict.fromkeys(k for c in configs for k in c)
                if len({json.dumps(c.get(k), sort_keys=True, default=str) for c in configs}) > 1]
        for i, c in zip(idxs, configs):
            out[i] = {k: c.get(k) for k in keys}
    return out


def run_labels(runs: Sequence[Run], group: Any = comparison_key) -> list[str]:
    """Display labels of ``runs`` shown together (one per run, in order): the one labelling
    of reports, analyses and plots.

    A run's label is its ``--label``, else its method plus the config keys that differ from
    the method's defaults (``item-cooccurrence window=3``; see :attr:`Run.base_label`).
    ``seed=S`` is appended to every run of a label when, within one group (``group(run)``,
    by default :func:`comparison_key`), runs of that label differ in seed. Runs that still
    share a label within a group and perturbation get their creation time, then their run
    id. The perturbation is not part of the label: a run and its perturbed copies share
    it, which is how the analyses pair them.
    """
    peer = _peer_changes(runs)
    bases = []
    for i, r in enumerate(runs):
        if i in peer and not r.meta.get("label"):
            base = describe_config(r.method, peer[i])
            bases.append(base + (f" (trained on {r.train_on.get('dataset')})" if r.train_on else ""))
        else:
            bases.append(r.base_label)
    keys = [group(r) for r in runs]
    seeds: dict[tuple[Any, str], set[str]] = {}
    for r, k, b in zip(runs, keys, bases):
        seeds.setdefault((k, b), set()).add(str(r.meta.get("seed")))
    with_seed = {b for (_, b), s in seeds.items() if len(s) > 1}
    labels = [f"{b} seed={r.meta.get('seed')}" if b in with_seed else b for r, b in zip(runs, bases)]
    for suffix in (lambda r: r.created_at.replace("T", " ")[:19], lambda r: r.run_id):
        slot: dict[tuple[Any, str, str], int] = {}
        for r, k, lab in zip(runs, keys, labels):
            key = (k, lab, json.dumps(r.perturbation, sort_keys=True, default=str))
            slot[key] = slot.get(key, 0) + 1
        labels = [f"{lab} ({suffix(r)})" if slot[(k, lab, json.dumps(r.perturbation, sort_keys=True, default=str))] > 1
                  else lab for r, k, lab in zip(runs, keys, labels)]
    return labels


def label_runs(runs: Sequence[Run], group: Any = comparison_key) -> list[Run]:
    """Set :attr:`Run.display_label` of every run from :func:`run_labels`; returns ``runs``."""
    for r, lab in zip(runs, run_labels(runs, group)):
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
