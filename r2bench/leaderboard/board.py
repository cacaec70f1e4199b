"""A board: ``leaderboards/<dataset>/board.json``, the canonical benchmark an entry must match.

CI cannot be assumed to have the prepared benchmark (preparing means the raw data,
and for Amazon several GB), so ``board.json`` carries everything validation and
scoring need, taken once from the prepared benchmark:

- ``fingerprint``: the canonical benchmark fingerprint (entries must carry it);
- ``instances``: for every test instance, columnar: ``instance_id``, ``target``
  (the held-out item) and ``candidates_sha``, a short hash of its sorted candidate
  set (see ``candidate_set_hash``); enough to check an entry covers every instance
  with exactly its 20 candidates and to recompute every metric from the entry alone.

The targets of the test split are stored in clear. That is deliberate and harmless:
the benchmarks are built deterministically from public data (MovieLens, Amazon
Reviews 2023), so anyone can rebuild the same test split and its targets from the
recorded fingerprint anyway; the board protects against *unverifiable* numbers,
not against a hidden-test-set style of cheating, which a public benchmark cannot.

A board with ``fingerprint: null`` is a placeholder (a dataset nobody has prepared
here yet, e.g. the Amazon categories); the first submission fixes it, and the
reviewer of that pull request checks the fingerprint.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from r2bench.atomic import sha256_text, write_json
from r2bench.errors import R2BenchError

BOARD_SCHEMA = "r2bench.leaderboard.board/1"
BOARD_FILE = "board.json"
ENTRIES_DIR = "entries"
SPLIT = "test"
PRIMARY_METRIC = "ndcg@10"
TARGETS_NOTE = (
    "Targets of the public test split are stored in clear so that CI can recompute every "
    "metric from an entry's scores without preparing the dataset. They are not secret: the "
    "benchmark is rebuilt deterministically from public data, fingerprint included."
)


def candidate_set_hash(candidates: list[str]) -> str:
    """16 hex chars of sha256 over the sorted candidate ids (joined by U+001F): order-free."""
    joined = "\x1f".join(sorted(str(c) for c in candidates))
    return sha256_text(joined)[:16]


@dataclass
class Board:
    """One board folder; ``instance_ids`` etc. are empty for a placeholder board."""

    path: Path
    dataset: str
    fingerprint: str | None
    k: int = 20
    title: str = ""
    instance_ids: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    targets: list[str] = field(default_factory=list)
    candidate_hashes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def entries_dir(self) -> Path:
        return self.path / ENTRIES_DIR

    @property
    def placeholder(self) -> bool:
        return self.fingerprint is None

    @property
    def n_instances(self) -> int:
        return int(self.instance_ids.size)

    def entry_files(self) -> list[Path]:
        if not self.entries_dir.is_dir():
            return []
        return sorted(self.entries_dir.glob("*.json"))

    def position(self) -> dict[int, int]:
        """instance_id -> row in the board's instance arrays."""
        return {int(i): r for r, i in enumerate(self.instance_ids.tolist())}


def board_dict_from_benchmark(benchmark: Any, title: str = "") -> dict[str, Any]:
    """The ``board.json`` content for a prepared benchmark (its test split)."""
    test = benchmark.split(SPLIT)
    return {
        "schema_version": BOARD_SCHEMA,
        "dataset": benchmark.name,
        "title": title or benchmark.name,
        "split": SPLIT,
        "k": int(benchmark.k),
        "primary_metric": PRIMARY_METRIC,
        "fingerprint": benchmark.fingerprint,
        "benchmark": {
            "spec": benchmark.manifest.get("spec"),
            "stats": benchmark.manifest.get("stats"),
            "r2bench_version": benchmark.manifest.get("r2bench_version"),
        },
        "targets_note": TARGETS_NOTE,
        "instances": {
            "instance_id": [int(i) for i in test["instance_id"].to_list()],
            "target": [str(t) for t in test["target"].to_list()],
            "candidates_sha": [candidate_set_hash(c) for c in test["candidates"].to_list()],
        },
    }


def placeholder_board_dict(dataset: str, title: str = "", note: str = "") -> dict[str, Any]:
    return {
        "schema_version": BOARD_SCHEMA,
        "dataset": dataset,
        "title": title or dataset,
        "split": SPLIT,
        "k": 20,
        "primary_metric": PRIMARY_METRIC,
        "fingerprint": None,
        "note": note or "No benchmark has been prepared and submitted for this dataset yet.",
        "instances": None,
    }


def write_board(folder: Path, content: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / BOARD_FILE, content)
    return folder / BOARD_FILE


def board_from_dict(folder: Path, raw: dict[str, Any]) -> Board:
    """Parse a board dict; raises R2BenchError naming the first problem."""
    where = folder / BOARD_FILE
    if raw.get("schema_version") != BOARD_SCHEMA:
        raise R2BenchError(f"{where}: schema_version {raw.get('schema_version')!r}, expected {BOARD_SCHEMA!r}")
    for key in ("dataset", "split", "k"):
        if key not in raw:
            raise R2BenchError(f"{where}: missing field {key!r}")
    from r2bench.leaderboard.safety import check_slug

    if check_slug(raw["dataset"]) is not None or raw["dataset"] != folder.name:
        raise R2BenchError(f"{where}: dataset {raw['dataset']!r} must be a plain [a-z0-9-] name equal to the folder name")
    if raw["split"] != SPLIT:
        raise R2BenchError(f"{where}: split {raw['split']!r}; boards rank the {SPLIT!r} split only")
    board = Board(path=folder, dataset=str(raw["dataset"]), fingerprint=raw.get("fingerprint"),
                  k=int(raw["k"]), title=str(raw.get("title") or raw["dataset"]), raw=raw)
    inst = raw.get("instances")
    if board.fingerprint is not None and not re.fullmatch(r"[0-9a-f]{16,128}", str(board.fingerprint)):
        raise R2BenchError(f"{where}: fingerprint {str(board.fingerprint)[:80]!r} is not a hex digest")
    if board.fingerprint is None:
        return board
    if not isinstance(inst, dict) or not all(isinstance(inst.get(c), list) for c in ("instance_id", "target", "candidates_sha")):
        raise R2BenchError(f"{where}: 'instances' must hold the lists instance_id, target, candidates_sha")
    n = len(inst["instance_id"])
    if not (len(inst["target"]) == len(inst["candidates_sha"]) == n) or n == 0:
        raise R2BenchError(f"{where}: 'instances' lists are empty or of different lengths")
    board.instance_ids = np.asarray(inst["instance_id"], dtype=np.int64)
    if np.unique(board.instance_ids).size != n:
        raise R2BenchError(f"{where}: duplicate instance ids")
    board.targets = [str(t) for t in inst["target"]]
    board.candidate_hashes = [str(c) for c in inst["candidates_sha"]]
    return board


def load_board(folder: str | Path) -> Board:
    folder = Path(folder)
    where = folder / BOARD_FILE
    try:
        raw = json.loads(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise R2BenchError(f"{folder} is not a leaderboard (no {BOARD_FILE})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise R2BenchError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise R2BenchError(f"{where}: expected a JSON object")
    return board_from_dict(folder, raw)


def board_dirs(root: str | Path) -> list[Path]:
    """Board folders under a leaderboards root, or ``[root]`` when root is itself a board."""
    root = Path(root)
    if (root / BOARD_FILE).is_file():
        return [root]
    if not root.is_dir():
        raise R2BenchError(f"{root}: no such leaderboards folder")
    return sorted(p.parent for p in root.glob(f"*/{BOARD_FILE}"))
