"""Packaging a test-split run into a leaderboard entry (``r2bench submit``)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r2bench.errors import R2BenchError
from r2bench.leaderboard import safety
from r2bench.leaderboard.board import (
    BOARD_FILE, SPLIT, board_dict_from_benchmark, board_from_dict, load_board, write_board,
)
from r2bench.leaderboard.schema import ENTRY_SCHEMA, STATED_METRICS, dump_entry, encode_scores, scores_file_name
from r2bench.version import __version__

#: run.json keys copied into the entry (benchmark_path is left out: it is a local path).
RUN_KEYS = ("run_id", "method", "label", "config", "seed", "command", "git_commit", "r2bench_version",
            "versions", "hardware", "timings", "created_at", "train_on", "limit", "perturbation",
            "n_instances", "info")


@dataclass
class MethodCard:
    name: str
    description: str | None = None
    url: str | None = None
    authors: str | None = None
    backbone: str | None = None
    params: str | None = None
    training_data: str | None = None
    used_val_split: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def _dicts(obj: Any) -> list[dict[str, Any]]:
    """Every dict nested in ``obj`` (itself first), depth first."""
    if isinstance(obj, dict):
        return [obj] + [d for v in obj.values() for d in _dicts(v)]
    if isinstance(obj, list):
        return [d for v in obj for d in _dicts(v)]
    return []


def _num(d: dict[str, Any], key: str) -> float:
    v = d.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0


def cost_per_1k(info: dict[str, Any], n_instances: int) -> dict[str, float | None]:
    """Tokens and cost per 1,000 instances from a run's ``info`` (None when not recorded).

    Tokens are all tokens the method processed, cache hits included (a cached answer
    still cost tokens once; the board compares methods, not cache states):
    ``prompt_tokens + completion_tokens + cached_prompt_tokens + cached_completion_tokens``
    as the LLM client records them, or ``total_tokens``; for local generation (R2Rank)
    ``mean_prompt_tokens * candidates_scored + reasoning_tokens``. Cost is
    ``cost_without_cache`` (else ``cost`` / ``cost_usd``) in the currency of the run's
    price table (USD for the public APIs).
    """
    none = {"tokens_per_1k": None, "cost_per_1k": None}
    if not n_instances:
        return none
    tokens = cost = None
    for d in _dicts(info):
        if tokens is None:
            if any(k in d for k in ("prompt_tokens", "completion_tokens")):
                tokens = sum(_num(d, k) for k in ("prompt_tokens", "completion_tokens",
                                                   "cached_prompt_tokens", "cached_completion_tokens"))
            elif "total_tokens" in d:
                tokens = _num(d, "total_tokens")
            elif "reasoning_tokens" in d and "candidates_scored" in d:
                tokens = _num(d, "mean_prompt_tokens") * _num(d, "candidates_scored") + _num(d, "reasoning_tokens")
        if cost is None:
            for key in ("cost_without_cache", "cost", "cost_usd"):
                if isinstance(d.get(key), (int, float)) and not isinstance(d.get(key), bool):
                    cost = float(d[key])
                    break
    scale = 1000.0 / n_instances
    return {
        "tokens_per_1k": round(tokens * scale, 1) if tokens is not None else None,
        "cost_per_1k": round(cost * scale, 6) if cost is not None else None,
    }


def trim_info(info: dict[str, Any], max_chars: int = 4000) -> dict[str, Any]:
    """The run's info with bulky values (logs, per-call tables) replaced by a note, so an
    entry stays small; the full info stays in the run's own run.json."""
    import json

    out: dict[str, Any] = {}
    for key, value in info.items():
        size = len(json.dumps(value, default=str))
        out[key] = value if size <= max_chars else f"<omitted from the entry: {size} characters; see the run's run.json>"
    return out


def _board_for(folder: Path, run: Any) -> tuple[Any, dict[str, Any] | None]:
    """The run's board, and the ``board.json`` content still to write when the board is new
    (or a placeholder to fill) from the run's benchmark; nothing is written here."""
    if (folder / BOARD_FILE).is_file():
        board = load_board(folder)
        if not board.placeholder:
            if board.fingerprint != run.fingerprint:
                raise R2BenchError(
                    f"run {run.path} was made on {run.dataset} [{str(run.fingerprint)[:12]}] but the board "
                    f"{folder} ranks the canonical benchmark [{str(board.fingerprint)[:12]}]; "
                    f"rerun the method on that benchmark (`r2bench prepare {run.dataset}` builds it; "
                    f"`r2bench verify {run.dataset}` checks a prepared copy against its manifest)"
                )
            return board, None
        title = board.title
    else:
        title = ""
    content = board_dict_from_benchmark(run.benchmark(), title=title)
    return board_from_dict(folder, content), content


def stated_metrics(run: Any) -> dict[str, float]:
    """Mean metrics of the run as its own evaluator computed them (metrics.parquet)."""
    from r2bench.eval.evaluate import run_metrics

    metrics = run_metrics(run)
    return {m: round(float(metrics[m].mean()), 8) for m in STATED_METRICS if m in metrics.columns}


def would_be_refused(board: Any, entry_path: Path, entry: dict[str, Any], scores: Any = None) -> list[str]:
    """What ``leaderboard validate`` would say about ``entry`` once written at ``entry_path``:
    its own problems, then those against the board's other entries (the one it replaces
    left out). ``scores``: the long-form scores of an entry whose sidecar is not written yet."""
    from r2bench.leaderboard.validate import check_across, check_entry

    candidate = check_entry(entry_path, board, raw=entry, scores=scores)
    if candidate.problems:
        return candidate.problems
    others = [check_entry(f, board) for f in board.entry_files() if f.name != entry_path.name]
    check_across([*others, candidate])
    return candidate.problems


def submit_run(
    run_path: str | Path,
    card: MethodCard,
    root: str | Path = "leaderboards",
    replace: bool = False,
    command: str | None = None,
    render: bool = True,
    today: str | None = None,
) -> Path:
    """Package the run at ``run_path`` into ``<root>/<dataset>/entries/<slug>.json``.

    Refuses non-test, limited or perturbed runs, runs on another benchmark than the
    board's, names that are not plain text, and existing names unless ``replace``.
    Before anything is written (board, scores file, entry) the entry is validated exactly
    as ``r2bench leaderboard validate`` will validate it, against the board's other
    entries too (:func:`would_be_refused`: duplicate names, identical scores).
    """
    from r2bench.runs import load_run

    run = load_run(run_path)
    if run.split != SPLIT:
        raise R2BenchError(f"run {run.path} is on the {run.split!r} split; only {SPLIT!r}-split runs can be submitted")
    if run.limit is not None:
        raise R2BenchError(f"run {run.path} scored only {run.limit} instances (--limit); submit a full test-split run")
    if run.meta.get("perturbation"):
        raise R2BenchError(f"run {run.path} was made on perturbed instances; submit an unperturbed run")
    why = safety.check_name(card.name)
    if why:
        raise R2BenchError(f"--name {why}")
    slug = safety.slugify(card.name)

    folder = Path(root) / run.dataset
    if safety.check_slug(run.dataset) is not None:
        raise R2BenchError(f"dataset name {run.dataset!r} is not usable as a board folder")
    board, new_board = _board_for(folder, run)
    entry_path = board.entries_dir / f"{slug}.json"
    if entry_path.exists() and not replace:
        raise R2BenchError(f"{entry_path} already exists (name {card.name!r}); choose another --name or pass --replace")

    long = run.scores.select("instance_id", "item_id", "score")
    scores_obj, big = encode_scores(long, slug)
    run_meta = {k: run.meta.get(k) for k in RUN_KEYS if k in run.meta}
    run_meta["info"] = trim_info(run_meta.get("info") or {})
    n = int(run.meta.get("n_instances") or run.scores["instance_id"].n_unique())
    entry: dict[str, Any] = {
        "schema_version": ENTRY_SCHEMA,
        "slug": slug,
        "method_card": card.as_dict(),
        "benchmark": {"dataset": run.dataset, "fingerprint": run.fingerprint, "split": SPLIT, "n_instances": n},
        "r2bench_version": run.meta.get("r2bench_version", __version__),
        "submitted_at": today or _dt.datetime.now(_dt.timezone.utc).date().isoformat(),
        "submit_command": command,
        "run": run_meta,
        "cost": cost_per_1k(run.info, n),
        "stated_metrics": stated_metrics(run),
        "scores": scores_obj,
    }
    side_bytes = None
    if big is not None:
        buf = io.BytesIO()
        big.write_parquet(buf)
        side_bytes = buf.getvalue()
        entry["scores"] = {**scores_obj, "sha256": hashlib.sha256(side_bytes).hexdigest()}
    problems = would_be_refused(board, entry_path, entry, big)
    if problems:
        raise R2BenchError(f"the entry for {run.path} would not validate (nothing written): " + "; ".join(problems))

    from r2bench.atomic import write_bytes, write_text

    if new_board is not None:
        write_board(folder, new_board)
    board.entries_dir.mkdir(parents=True, exist_ok=True)
    side = board.entries_dir / scores_file_name(slug)
    if side_bytes is not None:
        write_bytes(side, side_bytes)
    write_text(entry_path, dump_entry(entry))
    if big is None and side.exists():
        side.unlink()  # a replaced entry that used to be large
    if render:
        from r2bench.leaderboard.publish import render_all

        render_all(Path(root))
    return entry_path
