"""A pristine board built once from real runs on the tiny benchmark; tests copy and tamper it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

METHODS = ("random", "popularity", "item-cooccurrence")


@pytest.fixture(scope="session")
def lb_runs(tiny_benchmark_path, tmp_path_factory) -> dict[str, Path]:
    from r2bench.pipeline import run_method

    out = tmp_path_factory.mktemp("lb_runs")
    return {m: run_method(m, tiny_benchmark_path, seed=0, out=out) for m in METHODS}


@pytest.fixture(scope="session")
def pristine_root(lb_runs, tmp_path_factory) -> Path:
    """leaderboards/<synthetic>/ with one entry per sanity baseline (read-only: copy it)."""
    from r2bench.leaderboard.submit import MethodCard, submit_run

    root = tmp_path_factory.mktemp("lb_pristine") / "leaderboards"
    for m, run in lb_runs.items():
        submit_run(run, MethodCard(name=m.capitalize(), description=f"the {m} sanity baseline",
                                   url="https://example.org/r2bench", params="0"),
                   root=root, command=f"r2bench submit {run.name} --name {m.capitalize()}", today="2026-01-01")
    return root


@pytest.fixture
def lb_root(pristine_root, tmp_path) -> Path:
    """A private, writable copy of the pristine leaderboards folder."""
    dst = tmp_path / "leaderboards"
    shutil.copytree(pristine_root, dst)
    return dst


@pytest.fixture
def board_dir(lb_root) -> Path:
    (folder,) = [p.parent for p in lb_root.glob("*/board.json")]
    return folder


def read_entry(path: Path) -> dict:
    return json.loads(path.read_text())


def write_entry(path: Path, entry: dict) -> None:
    path.write_text(json.dumps(entry, indent=1))  # NaN allowed on purpose: tests write tampered entries
