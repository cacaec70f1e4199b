"""r2bench: frozen, reproducible benchmarks for LLM-based recommendation.

``import r2bench`` is cheap: heavy stacks (torch, transformers, recbole, openai,
matplotlib) load only when a method or report that needs them runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from r2bench.version import __version__

if TYPE_CHECKING:
    from r2bench.data.benchmark import Benchmark

__all__ = ["__version__", "load_benchmark", "prepare", "evaluate_run", "run_method"]


def load_benchmark(name_or_path: str, fingerprint: str | None = None) -> "Benchmark":
    """Load a prepared benchmark by dataset name (its latest prepare) or by folder path."""
    from r2bench.data.benchmark import load_benchmark as _load

    return _load(name_or_path, fingerprint)


def __getattr__(name: str) -> Any:  # lazy re-exports of the stage functions
    if name == "prepare":
        from r2bench.data.prepare import prepare

        return prepare
    if name == "run_method":
        from r2bench.pipeline import run_method

        return run_method
    if name == "evaluate_run":
        from r2bench.eval.evaluate import evaluate_run

        return evaluate_run
    raise AttributeError(name)
