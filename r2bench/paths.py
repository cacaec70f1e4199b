"""Where r2bench keeps its artifacts.

Everything lives under ``$R2BENCH_HOME`` (default ``~/.cache/r2bench``):

- ``benchmarks/<dataset>/<fingerprint>/``: prepared, frozen benchmarks
- ``benchmarks/<dataset>/LATEST``: the fingerprint of the most recent prepare
- ``raw/<dataset>/``: downloaded raw files
- ``models/``: converted model folders (e.g. SmolLM2 as safetensors)
- ``cache/``: response caches and other re-creatable state

Runs go to ``./runs/<run-id>/`` unless ``--out`` says otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("R2BENCH_HOME", Path.home() / ".cache" / "r2bench")).expanduser()


def benchmarks_dir() -> Path:
    return home() / "benchmarks"


def benchmark_root(dataset: str) -> Path:
    return benchmarks_dir() / dataset


def raw_dir(dataset: str) -> Path:
    return home() / "raw" / dataset


def models_dir() -> Path:
    return home() / "models"


def cache_dir() -> Path:
    return home() / "cache"


def runs_dir() -> Path:
    return Path(os.environ.get("R2BENCH_RUNS", "runs"))
