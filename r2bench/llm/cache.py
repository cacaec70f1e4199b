"""A SQLite response cache: a re-run is free and a killed run resumes.

Keyed by the sha256 of the canonical JSON of everything that determines the
answer (model, messages, sampling parameters, seed, max_tokens, logprob
settings) and nothing else: never the API key, never the base URL, so the same
request against a mirror hits the same entry. Only successful, complete answers
are stored (the client decides); each one is committed as soon as it arrives, so
a process killed mid-run loses at most the requests that were in flight.

WAL mode lets several processes (parallel runs, a progress reader) share the
file; ``busy_timeout`` makes concurrent writers wait instead of failing.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from r2bench import paths

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    created_at REAL NOT NULL,
    response TEXT NOT NULL
)
"""


def request_key(request: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a request's answer-determining fields."""
    blob = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def default_cache_path() -> Path:
    return paths.cache_dir() / "llm_responses.sqlite"


class ResponseCache:
    """A key -> JSON response store in one SQLite file (thread-confined connection)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.execute(SCHEMA)

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r})"

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def get_many(self, keys: Iterable[str], chunk: int = 500) -> dict[str, dict[str, Any]]:
        """All cached responses among ``keys`` (one query per ``chunk`` keys)."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(keys), chunk):
            part = keys[i : i + chunk]
            marks = ",".join("?" * len(part))
            for key, resp in self._conn.execute(
                f"SELECT key, response FROM responses WHERE key IN ({marks})", part
            ):
                out[key] = json.loads(resp)
        return out

    def put(self, key: str, model: str, response: dict[str, Any]) -> None:
        """Store one answer and commit at once (autocommit), so a kill cannot lose it."""
        self._conn.execute(
            "INSERT OR REPLACE INTO responses (key, model, created_at, response) VALUES (?, ?, ?, ?)",
            (key, model, time.time(), json.dumps(response, ensure_ascii=False, default=str)),
        )

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "ResponseCache":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
