"""Reading runs for the analyses (through ``r2bench.runs.load_run``).

The analyses consume runs from disk only (the run artifact is the contract), so
they work on runs produced by anyone. A run without ``metrics.parquet`` is
evaluated first. Runs that differ only in their perturbation share a label, which is
how the analyses pair an original run with its perturbed copies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from r2bench.errors import R2BenchError

if TYPE_CHECKING:
    from r2bench.runs import Run


@dataclass
class RunRecord:
    """One run folder as the analyses see it: ``r2bench.runs.Run`` plus a display label
    and the perturbation / transfer fields they group by."""

    run: Run = field(repr=False)
    label: str = ""

    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def meta(self) -> dict[str, Any]:
        return self.run.meta

    @property
    def run_id(self) -> str:
        return str(self.run.run_id)

    @property
    def method(self) -> str:
        return str(self.meta.get("method", "?"))

    @property
    def dataset(self) -> str:
        return str(self.meta.get("dataset", "?"))

    @property
    def fingerprint(self) -> str:
        return str(self.meta.get("benchmark_fingerprint", ""))

    @property
    def perturbation(self) -> dict[str, Any] | None:
        p = self.meta.get("perturbation")
        return p if isinstance(p, dict) and p else None

    @property
    def kind(self) -> str | None:
        p = self.perturbation
        return p.get("kind") if p else None

    @property
    def train_on(self) -> dict[str, Any] | None:
        return self.meta.get("train_on") or None

    @property
    def train_dataset(self) -> str:
        t = self.train_on
        return str(t.get("dataset")) if t else self.dataset

    @cached_property
    def metrics(self) -> pl.DataFrame:
        """Per-instance metrics (the run is evaluated first when it has none)."""
        return self.run.metrics(evaluate=True).with_columns(pl.col("instance_id").cast(pl.Int64))

    @cached_property
    def scores(self) -> pl.DataFrame:
        return self.run.scores.with_columns(pl.col("instance_id").cast(pl.Int64))

    def benchmark(self):
        return self.run.benchmark()


def load_run_record(path: str | Path) -> RunRecord:
    from r2bench.runs import load_run

    return RunRecord(run=load_run(path))


def expand_run_paths(items: list[str | Path]) -> list[Path]:
    """Run folders from paths that are runs or folders of runs (one level down)."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if (p / "run.json").is_file():
            out.append(p)
        elif p.is_dir():
            found = sorted(d for d in p.iterdir() if (d / "run.json").is_file())
            if not found:
                raise R2BenchError(f"{p}: neither a run folder nor a folder of runs (no run.json)")
            out.extend(found)
        else:
            raise R2BenchError(f"run not found: {p}")
    return out


def load_runs(items: list[str | Path]) -> list[RunRecord]:
    """Load runs and give each a unique label (its method, plus the run id where methods repeat)."""
    runs = [load_run_record(p) for p in expand_run_paths(items)]
    assign_labels(runs)
    return runs


def assign_labels(runs: list[RunRecord]) -> None:
    """Label = method name; runs of the same method that differ in anything but the
    perturbation (config, seed, dataset...) get the run id appended."""
    by_method: dict[str, set[str]] = {}
    for r in runs:
        key = json.dumps(
            [r.meta.get("config"), r.meta.get("seed"), r.fingerprint, r.meta.get("train_on")],
            sort_keys=True, default=str,
        )
        by_method.setdefault(r.method, set()).add(key)
    for r in runs:
        if r.label:
            continue
        r.label = r.method if len(by_method[r.method]) == 1 else f"{r.method} [{r.run_id}]"


def check_same_benchmark(runs: list[RunRecord], what: str) -> None:
    fps = {r.fingerprint for r in runs}
    if len(fps) > 1:
        raise R2BenchError(
            f"{what} compares runs on one benchmark, but these runs scored {len(fps)} different benchmarks "
            f"({', '.join(sorted(f[:12] for f in fps))}); pass runs of one dataset"
        )
