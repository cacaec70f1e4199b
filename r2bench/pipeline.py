"""Making runs: build a method from the registry, fit it, score a split, write and evaluate the run.

``run_method`` is what ``r2bench run`` (and every command that makes runs) calls. It
sits above the run format (:mod:`r2bench.runs`) and the evaluator
(:mod:`r2bench.eval.evaluate`) and uses both; neither knows about it. Cross-dataset
transfer (fit on A, score B) is checked here before anything is fitted
(:func:`transfer_problem`).
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from r2bench import paths
from r2bench.errors import R2BenchError
from r2bench.runs import SCHEMA, write_run
from r2bench.version import __version__


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


def as_benchmark(dataset: Any):
    """A ``Benchmark`` from a dataset name, a benchmark folder or a ``Benchmark``."""
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


def default_config(config_cls: type) -> dict[str, Any] | None:
    """The default values of a method's ``Config`` class (None when it cannot be built without arguments)."""
    from r2bench.config import config_to_dict

    try:
        return config_to_dict(config_cls())
    except Exception:  # noqa: BLE001 - a third-party config with required fields: defaults unknown
        return None


def method_defaults(method: str) -> dict[str, Any] | None:
    """The default config of the registered method ``method`` (None when unknown or not importable)."""
    try:
        return default_config(method_name_and_class(method)[1].Config)
    except Exception:  # noqa: BLE001 - an unregistered or uninstallable method: no defaults
        return None


def config_changes(config: dict[str, Any], defaults: dict[str, Any] | None) -> dict[str, Any] | None:
    """The keys of ``config`` whose value differs from ``defaults``, in config order (run.json's
    ``config_changes``, which labels show: ``item-cooccurrence window=3``); None without defaults."""
    import json

    if defaults is None:
        return None

    def norm(v: Any) -> str:  # tuples and lists, as run.json stores them, compare equal
        return json.dumps(v, sort_keys=True, default=str)

    return {k: v for k, v in config.items() if k not in defaults or norm(defaults[k]) != norm(v)}


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
    instance_ids: Sequence[int] | None = None,
) -> Path:
    """Fit ``method`` and score ``split`` of ``dataset``; write the run and return its folder.

    ``method``: a registered name (or an already built method instance). ``dataset`` /
    ``train_on``: a dataset name, benchmark folder or ``Benchmark``; with ``train_on``
    the method is fitted on that benchmark and scores ``dataset`` (cross-dataset
    transfer). ``limit``: score only the first N instances by instance_id.
    ``instance_ids``: score only these instances of the split (recorded in run.json as
    ``scored_instance_ids``, so the evaluator expects exactly them). ``perturb``:
    applied to the instances frame before scoring (e.g. reorder candidates or history);
    ``perturbation`` is recorded in run.json (defaults to the callable's name). ``out``:
    the folder under which ``<run-id>/`` is created (default ``./runs`` or
    ``$R2BENCH_RUNS``).
    """
    from r2bench.config import config_to_dict
    from r2bench.provenance import git_commit, hardware, package_versions

    if limit is not None and int(limit) < 1:
        raise R2BenchError(f"--limit must be a positive number of instances, got {limit}")
    t_start = time.perf_counter()
    bench = as_benchmark(dataset)
    name, model = build_method(method, seed, overrides, config_file)
    instances = bench.split(split)
    if limit is not None:
        instances = instances.head(int(limit))
    scored_ids = None
    if instance_ids is not None:
        scored_ids = sorted({int(i) for i in instance_ids})
        instances = instances.filter(pl.col("instance_id").is_in(scored_ids))
        if instances.height != len(scored_ids):
            raise R2BenchError(f"{bench.name} [{bench.fingerprint[:12]}]: {len(scored_ids) - instances.height} of "
                               f"the instance ids to score are not in its {split!r} split")
    if instances.height == 0:
        raise R2BenchError(f"{bench.name} [{bench.fingerprint[:12]}] has no {split!r} instances")

    fit_bench = bench
    train_rec = None
    if train_on is not None:
        fit_bench = as_benchmark(train_on)
        if not getattr(model, "transferable", True):
            raise R2BenchError(f"method {name!r} cannot be fitted on one dataset and scored on another")
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

    seed_everything(seed)
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
    config = getattr(model, "config", None)
    config_dict = config_to_dict(config) if config is not None else {}
    meta = {
        "schema": SCHEMA,
        "method": name,
        "label": label,
        "config": config_dict,
        "config_changes": config_changes(config_dict, default_config(type(config)) if config is not None else {}),
        "seed": seed,
        "dataset": bench.name,
        "benchmark_fingerprint": bench.fingerprint,
        "benchmark_path": str(Path(bench.path).resolve()),
        "split": split,
        "limit": int(limit) if limit is not None else None,
        "n_instances": instances.height,
        **({"scored_instance_ids": scored_ids} if scored_ids is not None else {}),
        "perturbation": perturbation,
        "train_on": train_rec,
        "r2bench_version": __version__,
        "git_commit": git_commit(),
        "versions": package_versions(),
        "hardware": hardware(),
        "timings": {"fit_s": round(fit_s, 4), "score_s": round(score_s, 4),
                    "total_s": round(time.perf_counter() - t_start, 4)},
        "info": model.info() or {},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="microseconds"),  # orders runs (--latest)
        "command": command or f"r2bench.pipeline.run_method({name!r}, {bench.name!r}, split={split!r}, "
                              f"limit={limit!r}, seed={seed!r}, overrides={overrides!r})",
    }
    run_dir = write_run(Path(out) if out is not None else paths.runs_dir(), meta, instances, dense, artifacts)
    if evaluate:
        from r2bench.eval.evaluate import evaluate_run

        evaluate_run(run_dir, benchmark=bench)
    return run_dir


# --- cross-dataset transfer ----------------------------------------------------------------

def item_overlap(train_bench, test_bench, split: str = "test") -> float:
    """Share of the candidate items of ``test_bench``'s split that appear in ``train_bench``'s items."""
    known = set(train_bench.items["item_id"].to_list())
    cands = test_bench.split(split)["candidates"].explode().unique().to_list()
    return float(np.mean([c in known for c in cands])) if cands else 0.0


def method_name_and_class(method) -> tuple[str, type]:
    """(name, class) of a registered method name, a method class or a method instance."""
    if isinstance(method, str):
        from r2bench.methods import method_class

        return method, method_class(method)
    cls = method if isinstance(method, type) else type(method)
    return (getattr(method, "name", "") or cls.__name__), cls


def transfer_problem(method, train_bench, test_bench, split: str = "test") -> str | None:
    """Why ``method`` fitted on ``train_bench`` cannot meaningfully score ``test_bench`` (None if it can).

    Non-transferable methods are refused; transferable ones are refused only when no
    candidate item of the test benchmark exists in the training benchmark *and* the
    method declares itself ID-based (``id_based = True``); otherwise a zero overlap
    is reported as a warning by :func:`overlap_warning`.
    """
    if train_bench.fingerprint == test_bench.fingerprint:
        return None
    obj = method  # an instance (or wrapper) answers for itself; a name answers through its class
    method, cls = method_name_and_class(method)
    if isinstance(obj, str):
        obj = cls
    if not getattr(obj, "transferable", True):
        return (f"{method} cannot transfer: it learns item ids of the benchmark it is fitted on "
                f"(transferable = False), so it cannot score {test_bench.name} after fitting on {train_bench.name}")
    if getattr(obj, "id_based", False) and item_overlap(train_bench, test_bench, split) == 0.0:
        return (f"{method} is ID-based and none of {test_bench.name}'s candidate items occurs in "
                f"{train_bench.name}: every candidate would get the same score")
    return None


def overlap_warning(train_bench, test_bench, split: str = "test") -> str | None:
    if train_bench.fingerprint == test_bench.fingerprint:
        return None
    ov = item_overlap(train_bench, test_bench, split)
    if ov < 0.5:
        return (f"only {100 * ov:.1f}% of {test_bench.name}'s candidate items occur in {train_bench.name}: "
                f"ID-based methods can only tell known items apart")
    return None
