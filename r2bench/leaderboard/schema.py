"""The leaderboard entry: ``leaderboards/<dataset>/entries/<slug>.json``.

An entry is a JSON object (schema ``r2bench.leaderboard.entry/1``)::

    schema_version   "r2bench.leaderboard.entry/1"
    slug             file-name stem, [a-z0-9-] (derived from the method name)
    method_card      name (required), description, url, authors, backbone, params
                     (model size, e.g. "135M"), training_data, used_val_split (bool, required)
    benchmark        dataset, fingerprint, split ("test"), n_instances
    r2bench_version  the version that made the run
    submitted_at     YYYY-MM-DD
    run              the run's provenance: run_id, method, config, seed, command,
                     git_commit, versions, hardware, timings, created_at, train_on, info
    cost             tokens_per_1k / cost_per_1k instances (null when unknown; see submit.cost_per_1k)
    stated_metrics   mean ndcg@1/5/10, hr@1/5/10, mrr as the submitter computed them;
                     validation RECOMPUTES them from ``scores`` and rejects a mismatch
    scores           the per-instance scores, in one of two forms:

``scores`` forms. Inline (``"format": "inline/1"``) is the default and what every
entry of an ml-100k-sized split uses (94 instances x 20 scores, ~40 kB, readable in a
diff): three parallel lists ``instance_id`` [n], ``item_id`` [n][K] and ``score``
[n][K] (JSON floats round-trip float64 exactly). Above ``INLINE_MAX_SCORES`` scores
(Amazon-sized splits) the scores go to a sibling ``<slug>.scores.parquet`` in the
run's long form (instance_id, item_id, score) and the entry holds
``{"format": "parquet/1", "file": "<slug>.scores.parquet", "sha256": ...}``; the
file name is always derived from the slug, never taken from the entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from r2bench.eval.validate import first_few

ENTRY_SCHEMA = "r2bench.leaderboard.entry/1"
INLINE_FORMAT = "inline/1"
PARQUET_FORMAT = "parquet/1"
INLINE_MAX_SCORES = 50_000
#: Means every entry must state (validation recomputes them all).
REQUIRED_METRICS = ("ndcg@1", "ndcg@5", "ndcg@10")
STATED_METRICS = ("ndcg@1", "ndcg@5", "ndcg@10", "hr@1", "hr@5", "hr@10", "mrr")
METRIC_TOLERANCE = 1e-4

#: method_card field -> (required, kind) where kind is one of name/url/short/text/bool
CARD_FIELDS: dict[str, tuple[bool, str]] = {
    "name": (True, "name"),
    "description": (False, "text"),
    "url": (False, "url"),
    "authors": (False, "short"),
    "backbone": (False, "short"),
    "params": (False, "short"),
    "training_data": (False, "short"),
    "used_val_split": (True, "bool"),
}
TOP_FIELDS = ("schema_version", "slug", "method_card", "benchmark", "r2bench_version",
              "submitted_at", "run", "stated_metrics", "scores")


@dataclass
class Entry:
    """A parsed entry (filled by ``validate.check_entry``); ``metrics`` (per instance, board order) is set only when the scores are valid."""

    path: Path
    raw: dict[str, Any]
    scores: pl.DataFrame | None = None
    metrics: dict[str, np.ndarray] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return str(self.raw.get("slug", self.path.stem))

    @property
    def card(self) -> dict[str, Any]:
        card = self.raw.get("method_card")
        return card if isinstance(card, dict) else {}

    @property
    def name(self) -> str:
        return str(self.card.get("name", self.slug))

    @property
    def ok(self) -> bool:
        return not self.problems and self.metrics is not None


def scores_file_name(slug: str) -> str:
    return f"{slug}.scores.parquet"


@dataclass
class EntryScores:
    """Scores of one entry as a long-form frame (instance_id, item_id, score); score may be NaN."""

    frame: pl.DataFrame


def encode_scores(long: pl.DataFrame, slug: str) -> tuple[dict[str, Any], pl.DataFrame | None]:
    """The entry's ``scores`` object, plus the frame to write as a sibling file when too large."""
    long = long.sort("instance_id", "item_id")
    if long.height > INLINE_MAX_SCORES:
        return {"format": PARQUET_FORMAT, "file": scores_file_name(slug)}, long
    grouped = long.group_by("instance_id", maintain_order=True).agg("item_id", "score")
    return {
        "format": INLINE_FORMAT,
        "instance_id": [int(i) for i in grouped["instance_id"].to_list()],
        "item_id": grouped["item_id"].to_list(),
        "score": [[float(s) for s in row] for row in grouped["score"].to_list()],
    }, None


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return float("nan")
    return float(value)


def decode_scores(scores: Any, entry_path: Path, slug: str) -> tuple[EntryScores | None, list[str]]:
    """Parse an entry's ``scores`` object into long form; returns (scores, problems).

    Non-numeric scores (null, strings) become NaN so that the finiteness check reports
    them with the others; structural problems are returned as messages.
    """
    if not isinstance(scores, dict):
        return None, ["'scores' must be an object"]
    fmt = scores.get("format")
    if fmt == PARQUET_FORMAT:
        # The file name is derived from the slug; whatever the entry says is ignored.
        path = entry_path.parent / scores_file_name(slug)
        if scores.get("file") != path.name:
            return None, [f"scores file must be named {path.name!r}, entry says {scores.get('file')!r}"]
        if not path.is_file():
            return None, [f"scores file {path.name} is missing"]
        from r2bench.atomic import sha256_file

        if scores.get("sha256") != sha256_file(path):
            return None, [f"scores file {path.name} does not match the sha256 recorded in the entry"]
        try:
            frame = pl.read_parquet(path, columns=["instance_id", "item_id", "score"])
            frame = frame.select(
                pl.col("instance_id").cast(pl.Int64), pl.col("item_id").cast(pl.String),
                pl.col("score").cast(pl.Float64).fill_null(float("nan")),
            )
        except Exception as exc:  # noqa: BLE001 - any unreadable file is one problem line
            return None, [f"scores file {path.name} is unreadable ({type(exc).__name__}: {exc})"]
        return EntryScores(frame), []
    if fmt != INLINE_FORMAT:
        return None, [f"scores format {fmt!r} is not one of {INLINE_FORMAT!r}, {PARQUET_FORMAT!r}"]
    ids, items, vals = scores.get("instance_id"), scores.get("item_id"), scores.get("score")
    if not (isinstance(ids, list) and isinstance(items, list) and isinstance(vals, list)):
        return None, ["inline scores need the lists instance_id, item_id and score"]
    if not (len(ids) == len(items) == len(vals)):
        return None, [f"inline scores lists differ in length: instance_id {len(ids)}, item_id {len(items)}, score {len(vals)}"]
    problems: list[str] = []
    rows_i: list[int] = []
    rows_item: list[str] = []
    rows_s: list[float] = []
    bad_shape = []
    for iid, its, ss in zip(ids, items, vals):
        if isinstance(iid, bool) or not isinstance(iid, int):
            problems.append(f"instance id {iid!r} is not an integer")
            continue
        if not isinstance(its, list) or not isinstance(ss, list) or len(its) != len(ss):
            bad_shape.append(iid)
            continue
        rows_i.extend([iid] * len(its))
        rows_item.extend(str(x) for x in its)
        rows_s.extend(_as_float(x) for x in ss)
    if bad_shape:
        problems.append(f"{len(bad_shape)} instance(s) whose item_id and score lists differ in length: {first_few(bad_shape)}")
    frame = pl.DataFrame(
        {"instance_id": np.asarray(rows_i, dtype=np.int64), "item_id": rows_item,
         "score": np.asarray(rows_s, dtype=np.float64)},
        schema={"instance_id": pl.Int64, "item_id": pl.String, "score": pl.Float64},
    )
    return EntryScores(frame), problems


def scores_fingerprint(long: pl.DataFrame) -> str:
    """A hash of the scores themselves (order-free), used to refuse duplicate submissions."""
    import hashlib

    canon = long.sort("instance_id", "item_id")
    h = hashlib.sha256()
    h.update(canon["instance_id"].to_numpy().astype("<i8").tobytes())
    h.update("\x1f".join(canon["item_id"].to_list()).encode("utf-8"))
    h.update(np.round(canon["score"].to_numpy().astype(np.float64), 12).astype("<f8").tobytes())
    return h.hexdigest()


def dump_entry(entry: dict[str, Any]) -> str:
    """Entry JSON: metadata indented and key-sorted, inline scores one instance per line.

    Keeps an ml-100k entry around 60 kB and its diff readable; ``json.loads`` reads it
    back to exactly the same values (float64 repr round-trips).
    """
    import json

    meta = {k: v for k, v in entry.items() if k != "scores"}
    text = json.dumps(meta, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False, default=str)
    scores = entry["scores"]

    def one(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))

    if scores.get("format") == INLINE_FORMAT:
        parts = [f'    "format": {one(scores["format"])}', f'    "instance_id": {one(scores["instance_id"])}']
        for key in ("item_id", "score"):
            rows = ",\n".join(f"      {one(row)}" for row in scores[key])
            parts.append(f'    "{key}": [\n{rows}\n    ]')
        block = "{\n" + ",\n".join(parts) + "\n  }"
    else:
        block = json.dumps(scores, sort_keys=True, indent=2, ensure_ascii=False).replace("\n", "\n  ")
    return text[:-2] + ',\n  "scores": ' + block + "\n}\n"
