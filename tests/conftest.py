"""Shared test set-up: an isolated R2BENCH_HOME, no progress bars, tiny generated benchmarks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.server_fixtures import (  # noqa: F401  (guarded servers)
    _llama_server_alive, llama_server, pytest_runtest_call, smollm2_dir, vllm_server,
)

os.environ.setdefault("R2BENCH_PROGRESS", "0")


def _no_cuda_reason() -> str | None:
    try:
        import torch
    except ImportError:
        return "gpu test: torch is not installed"
    if not torch.cuda.is_available():
        return f"gpu test: CUDA is not available (torch {torch.__version__}, CUDA build {torch.version.cuda})"
    return None


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` are skipped, with the reason, where CUDA is missing (never reported as passed)."""
    gpu = [item for item in items if item.get_closest_marker("gpu") is not None]
    reason = _no_cuda_reason() if gpu else None
    if reason:
        for item in gpu:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own R2BENCH_HOME and runs directory; nothing touches ~/.cache."""
    home = tmp_path_factory.mktemp("r2bench_home")
    monkeypatch.setenv("R2BENCH_HOME", str(home))
    monkeypatch.setenv("R2BENCH_RUNS", str(home / "runs"))
    monkeypatch.setenv("R2BENCH_CARDS_DIR", str(home / "data_cards"))  # never rewrite committed cards
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    yield home


@pytest.fixture(scope="session")
def tiny_benchmark_path(tmp_path_factory) -> Path:
    """A small benchmark (60 users, 80 items) built by the real pipeline from generated data.

    Session-scoped and read-only: tests must not modify it.
    """
    from r2bench.data.synthetic import make_synthetic_benchmark

    out = tmp_path_factory.mktemp("tiny_bench")
    return make_synthetic_benchmark(out, n_users=60, n_items=80, seed=0)


@pytest.fixture
def tiny_benchmark(tiny_benchmark_path):
    from r2bench.data.benchmark import load_benchmark

    return load_benchmark(tiny_benchmark_path)
