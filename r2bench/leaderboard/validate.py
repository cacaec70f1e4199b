"""Validation of leaderboard entries, meant for CI on pull requests.

Nothing an entry states is trusted: its scores are checked against the board's
canonical test instances (every instance, exactly its K candidates, finite) and every
stated metric is recomputed from the scores. Each problem is reported as one line
``<file>: <what is wrong>``; ``validate_tree`` returns all of them at once so a
contributor can fix everything in one go.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any

import polars as pl

from r2bench.errors import R2BenchError
from r2bench.eval.validate import duplicate_pairs, first_few, instance_mismatch, nonfinite_rows
from r2bench.leaderboard import safety
from r2bench.leaderboard.board import BOARD_FILE, SPLIT, Board, board_dirs, candidate_set_hash, load_board
from r2bench.leaderboard.schema import (
    CARD_FIELDS, ENTRY_SCHEMA, METRIC_TOLERANCE, REQUIRED_METRICS, STATED_METRICS, TOP_FIELDS, Entry, decode_scores,
    scores_file_name, scores_fingerprint,
)
from r2bench.leaderboard.scoring import means, recompute_metrics


def _check_card(card: Any) -> list[str]:
    if not isinstance(card, dict):
        return ["'method_card' must be an object"]
    out = []
    for key in card:
        if key not in CARD_FIELDS:
            out.append(f"method_card: unknown field {str(key)[:40]!r} (allowed: {', '.join(CARD_FIELDS)})")
    for key, (required, kind) in CARD_FIELDS.items():
        value = card.get(key)
        if value is None:
            if required:
                out.append(f"method_card: missing required field {key!r}")
            continue
        if kind == "name":
            why = safety.check_name(value)
        elif kind == "url":
            why = safety.check_url(value)
        elif kind == "bool":
            why = None if isinstance(value, bool) else "must be true or false"
        elif kind == "text":
            why = safety.check_text(value, safety.MAX_TEXT)
        else:
            why = safety.check_text(value, safety.MAX_SHORT)
        if why:
            out.append(f"method_card.{key} {why}")
    return out


def _check_scores(entry: Entry, board: Board, frame: pl.DataFrame | None = None) -> list[str]:
    """Coverage and finiteness of the scores against the board's test instances (``frame``:
    the scores in long form, for an entry not written yet; else decoded from the entry)."""
    if frame is not None:
        long, problems = frame, []
    else:
        # The sidecar name comes from the file name (a real file in entries/), never from the entry's text.
        scores, problems = decode_scores(entry.raw.get("scores"), entry.path, entry.path.stem)
        if scores is None:
            return problems
        long = scores.frame
    bad = nonfinite_rows(long)
    if bad.height:
        ids = bad["instance_id"].unique(maintain_order=True).to_list()
        problems.append(f"{bad.height} non-finite or non-numeric score(s) (NaN, inf, null) in instance(s) {first_few(ids)}")
    dup = duplicate_pairs(long)
    if dup.height:
        problems.append(f"duplicate candidates in instance(s) {first_few(dup['instance_id'].unique().sort().to_list())}")
    want = board.position()
    extra, missing = instance_mismatch(long, board.instance_ids.tolist())
    if extra:
        problems.append(f"{len(extra)} instance(s) not in the board's test split: {first_few(extra)}")
    if missing:
        problems.append(f"{len(missing)} test instance(s) missing: {first_few(missing)}")
    grouped = long.group_by("instance_id").agg(pl.col("item_id")).sort("instance_id")
    wrong_k, wrong_set = [], []
    for iid, items in zip(grouped["instance_id"].to_list(), grouped["item_id"].to_list()):
        row = want.get(iid)
        if row is None:
            continue
        if len(items) != board.k:
            wrong_k.append(f"{iid} ({len(items)})")
        elif candidate_set_hash(items) != board.candidate_hashes[row]:
            wrong_set.append(iid)
    if wrong_k:
        problems.append(f"{len(wrong_k)} instance(s) without exactly {board.k} candidates: {first_few(wrong_k)}")
    if wrong_set:
        problems.append(f"{len(wrong_set)} instance(s) whose candidate set differs from the benchmark's: {first_few(wrong_set)}")
    if not problems:
        entry.scores = long
    return problems


def _check_stated(entry: Entry, recomputed: dict[str, float]) -> list[str]:
    stated = entry.raw.get("stated_metrics")
    if not isinstance(stated, dict):
        return ["'stated_metrics' must be an object of metric -> mean"]
    out = [f"stated_metrics: missing {m!r}" for m in REQUIRED_METRICS if m not in stated]
    for name, value in stated.items():
        if name not in STATED_METRICS:
            out.append(f"stated_metrics: unknown metric {str(name)[:40]!r} (allowed: {', '.join(STATED_METRICS)})")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            out.append(f"stated_metrics.{name} = {value!r} is not a finite number")
            continue
        got = recomputed[name]
        if abs(float(value) - got) > METRIC_TOLERANCE:
            out.append(f"stated {name} = {float(value):.6f} but recomputed {got:.6f} "
                       f"(difference {abs(float(value) - got):.2g} > {METRIC_TOLERANCE:g})")
    return out


def check_entry(path: Path, board: Board, raw: dict[str, Any] | None = None,
                scores: pl.DataFrame | None = None) -> Entry:
    """Parse and validate one entry file (or an already-built dict) against ``board``;
    ``scores`` (long form) stands in for a sidecar file that is not written yet."""
    entry = Entry(path=path, raw={})
    if raw is None:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            entry.problems.append(f"not valid JSON ({exc})")
            return entry
    if not isinstance(raw, dict):
        entry.problems.append("expected a JSON object")
        return entry
    entry.raw = raw
    p = entry.problems
    if raw.get("schema_version") != ENTRY_SCHEMA:
        p.append(f"schema_version {raw.get('schema_version')!r}, expected {ENTRY_SCHEMA!r}")
        return entry
    p += [f"missing required field {k!r}" for k in TOP_FIELDS if k not in raw]
    if p:
        return entry

    slug = raw["slug"]
    why = safety.check_slug(slug)
    if why:
        p.append(f"slug {why}")
    elif slug != path.stem:
        p.append(f"slug {slug!r} does not match the file name {path.name!r}")
    p += _check_card(raw["method_card"])
    name = entry.card.get("name")
    if isinstance(name, str) and safety.check_name(name) is None and not why and safety.slugify(name) != slug:
        p.append(f"slug {slug!r} is not the slug of the name {name!r} ({safety.slugify(name)!r})")

    bench = raw["benchmark"] if isinstance(raw["benchmark"], dict) else {}
    if bench.get("split") != SPLIT:
        p.append(f"entry is for the {bench.get('split')!r} split; boards rank the {SPLIT!r} split only")
    if bench.get("dataset") != board.dataset:
        p.append(f"benchmark.dataset {bench.get('dataset')!r} is not this board's {board.dataset!r}")
    if not board.placeholder and bench.get("fingerprint") != board.fingerprint:
        p.append(f"benchmark fingerprint {str(bench.get('fingerprint'))[:16]!r} does not match the board's "
                 f"canonical {str(board.fingerprint)[:16]!r} (fingerprints hash the tables' rows; "
                 f"`r2bench verify {board.dataset}` checks a prepared benchmark against its manifest)")
    try:
        _dt.date.fromisoformat(str(raw["submitted_at"]))
    except ValueError:
        p.append(f"submitted_at {raw['submitted_at']!r} is not a YYYY-MM-DD date")
    run = raw["run"]
    if not isinstance(run, dict):
        p.append("'run' must be an object")
    else:
        if run.get("limit") is not None:
            p.append(f"the run was limited to {run['limit']} instances; submit a full test-split run")
        if run.get("perturbation") is not None:
            p.append("the run was made on perturbed instances; submit an unperturbed run")
    cost = raw.get("cost") or {}
    for key, value in (cost.items() if isinstance(cost, dict) else [("cost", cost)]):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            p.append(f"cost.{key} = {value!r} is not a non-negative number")

    if board.placeholder:
        p.append("the board has no canonical benchmark yet (fingerprint null in board.json)")
        return entry
    score_problems = _check_scores(entry, board, scores)
    p += score_problems
    if entry.scores is not None:
        entry.metrics = recompute_metrics(entry.scores, board)
        p += _check_stated(entry, means(entry.metrics))
    return entry


def check_board(folder: str | Path) -> tuple[Board | None, list[Entry], list[str]]:
    """Validate a whole board: every entry, plus duplicates across entries and stray files."""
    folder = Path(folder)
    try:
        board = load_board(folder)
    except R2BenchError as exc:  # a bad board is one line
        return None, [], [str(exc)]
    entries = [check_entry(f, board) for f in board.entry_files()]
    if not (board.placeholder and not entries):
        check_across(entries)
    lines = [_one_line(f"{_rel(e.path)}: {msg}") for e in entries for msg in e.problems]
    known = {f.name for f in board.entry_files()} | {scores_file_name(f.stem) for f in board.entry_files()}
    if board.entries_dir.is_dir():
        for f in sorted(board.entries_dir.iterdir()):
            if f.name not in known and f.name != ".gitkeep":
                lines.append(_one_line(f"{_rel(f)}: unexpected file in entries/ (only <slug>.json and <slug>.scores.parquet)"))
    return board, entries, lines


def check_across(entries: list[Entry]) -> None:
    """The checks between entries of one board, added to the entries' problems: a duplicate
    name (case-insensitive) or identical scores; the earlier submission (by date, then file
    name) keeps its name / scores, the later one is refused."""
    seen_names: dict[str, Entry] = {}
    seen_scores: dict[str, Entry] = {}
    for e in sorted(entries, key=lambda en: (str(en.raw.get("submitted_at", "")), en.path.name)):
        key = e.name.casefold().strip()
        if key in seen_names:
            e.problems.append(f"duplicate name {e.name!r}, already used by {seen_names[key].path.name}")
        else:
            seen_names[key] = e
        if e.scores is not None:
            fp = scores_fingerprint(e.scores)
            if fp in seen_scores:
                e.problems.append(f"identical scores to {seen_scores[fp].path.name} (a duplicate submission)")
            else:
                seen_scores[fp] = e


def validate_tree(root: str | Path) -> list[str]:
    """All problems under a leaderboards root (or one board folder); empty when valid."""
    lines: list[str] = []
    root = Path(root)
    for folder in board_dirs(root):
        lines += check_board(folder)[2]
    if not (root / BOARD_FILE).is_file():
        for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not (sub / BOARD_FILE).is_file():
                lines.append(_one_line(f"{_rel(sub)}: a folder without {BOARD_FILE} (its entries cannot be validated)"))
    return lines


def _one_line(text: str, limit: int = 400) -> str:
    """Problems are echoed into CI logs: one line, bounded, whatever an entry contains."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
