"""Recomputing an entry's metrics from its scores and the board alone (no benchmark needed), and ranking entries."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from r2bench.eval.metrics import DEFAULT_METRICS, per_instance_metrics
from r2bench.eval.significance import bootstrap_ci, marker, wilcoxon_p
from r2bench.leaderboard.board import Board
from r2bench.leaderboard.schema import Entry


def dense_scores(long: pl.DataFrame, board: Board) -> tuple[np.ndarray, np.ndarray]:
    """``(scores[n, K], target_index[n])`` in the board's instance order.

    ``long`` must already be validated (every board instance with exactly its K
    candidates, no duplicates). Candidates are ordered by item id inside each row,
    which is harmless: the metrics give tied scores their exact expectation, so no
    order of the candidates can change a value.
    """
    n, k = board.n_instances, board.k
    pos = pl.DataFrame({"instance_id": board.instance_ids, "_row": np.arange(n, dtype=np.int64),
                        "_target": board.targets})
    joined = long.join(pos, on="instance_id", how="inner").sort("_row", "item_id")
    if joined.height != n * k:
        raise ValueError(f"scores have {joined.height} rows for {n} instances x {k} candidates")
    scores = joined["score"].to_numpy().astype(np.float64).reshape(n, k)
    is_target = (joined["item_id"] == joined["_target"]).to_numpy().reshape(n, k)
    if not (is_target.sum(axis=1) == 1).all():
        bad = board.instance_ids[is_target.sum(axis=1) != 1][:5].tolist()
        raise ValueError(f"the target is not among the scored candidates of instance(s) {bad}")
    return scores, is_target.argmax(axis=1)


def recompute_metrics(long: pl.DataFrame, board: Board, metrics: tuple[str, ...] = DEFAULT_METRICS) -> dict[str, np.ndarray]:
    """Per-instance metrics (board order) recomputed with r2bench's evaluator."""
    scores, target_index = dense_scores(long, board)
    return per_instance_metrics(scores, target_index, metrics)


def means(per_instance: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: float(np.mean(v)) for name, v in per_instance.items()}


N_BOOT = 10_000
BOOT_SEED = 0


@dataclass
class Ranked:
    """A valid entry with its place on the board."""

    entry: Entry
    rank: int
    means: dict[str, float]
    ci: tuple[float, float]
    #: paired Wilcoxon p on per-instance NDCG@10 vs the leader (the leader: vs the runner-up)
    p_value: float | None
    marker: str


def rank_entries(entries: list[Entry], metric: str = "ndcg@10") -> list[Ranked]:
    """Rank valid entries by mean ``metric`` (ties by name) with CI and significance vs the leader."""
    valid = [e for e in entries if e.metrics is not None]
    valid.sort(key=lambda e: (-float(np.mean(e.metrics[metric])), e.name.casefold()))
    out: list[Ranked] = []
    for i, e in enumerate(valid):
        vals = e.metrics[metric]
        other = valid[1] if i == 0 and len(valid) > 1 else (valid[0] if i > 0 else None)
        p = wilcoxon_p(vals, other.metrics[metric]) if other is not None else None
        out.append(Ranked(entry=e, rank=i + 1, means=means(e.metrics),
                          ci=bootstrap_ci(vals, n_boot=N_BOOT, seed=BOOT_SEED), p_value=p, marker=marker(p)))
    return out


@dataclass
class BoardView:
    """A validated board and its ranked valid entries: what rendering needs (computed once per render)."""

    folder: Path
    board: Board | None
    ranked: list[Ranked]
    problems: list[str]
