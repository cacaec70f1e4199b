"""Writes Amazon Reviews 2023 raw files (the real schema) for tests and the benchmark.

``write_category(dir, category, ...)`` writes ``{category}.jsonl.gz`` and
``meta_{category}.jsonl.gz`` with realistic records: reviews keyed by ``parent_asin``
(``asin`` is a variant id), ms timestamps spread around the 2021-10..2023-10
window, repeated (user, item) reviews, and metadata with the quirks of the real
files (titles with HTML entities, ``<span id`` junk, over-long or one-character
titles, ``details`` as an object or a JSON string, ``price`` as float, null or
"None"). ``extra_review_lines`` / ``extra_meta_lines`` are raw lines appended as
is (malformed lines for error tests), ``truncate`` cuts the gzip stream.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

WINDOW_START_MS = 1_633_046_400_000
WINDOW_END_MS = 1_696_118_400_000
DAY_MS = 86_400_000


def meta_record(i: int, rng: random.Random) -> dict:
    title = f"Game Controller Edition {i} &amp; Stand"
    if i % 25 == 3:
        title = '<span id="x">broken</span>'
    elif i % 25 == 7:
        title = " ".join(["word"] * 25)
    elif i % 25 == 11:
        title = "X"
    return {
        "main_category": "Video Games",
        "title": title,
        "average_rating": round(rng.uniform(1, 5), 1),
        "rating_number": rng.randint(0, 5000),
        "features": ["Wireless", "Rechargeable battery"],
        "description": [f"Description of product {i}.", "It is " + " ".join(["very"] * 150) + " good."] if i % 4 else [],
        "price": rng.choice([19.99, None, "None", 5.0]),
        "images": [{"thumb": "https://example.invalid/t.jpg", "large": "https://example.invalid/l.jpg", "variant": "MAIN"}],
        "videos": [],
        "store": f"Store {i % 7}",
        "categories": ["Video Games", "Accessories", "Controllers"] if i % 3 else [],
        "details": {"Brand": "Acme"} if i % 2 else json.dumps({"Brand": "Acme"}),
        "parent_asin": f"B{i:09d}",
        "bought_together": None,
    }


def review_record(user: str, item: int, ts: int, rng: random.Random) -> dict:
    return {
        "rating": float(rng.randint(1, 5)),
        "title": "Great",
        "text": "Works as expected. " * rng.randint(1, 5),
        "images": [],
        "asin": f"A{item:09d}{rng.randint(0, 3)}",
        "parent_asin": f"B{item:09d}",
        "user_id": user,
        "timestamp": ts,
        "helpful_vote": rng.randint(0, 10),
        "verified_purchase": rng.random() < 0.8,
    }


def reviews_for(n_users: int, n_items: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for u in range(n_users):
        user = f"AG{u:026d}"
        mine = [
            review_record(user, rng.randrange(n_items), rng.randint(WINDOW_START_MS, WINDOW_END_MS - 1), rng)
            for _ in range(rng.randint(2, 6))
        ]
        # outside the window, before and after
        mine.append(review_record(user, rng.randrange(n_items), WINDOW_START_MS - rng.randint(1, 900) * DAY_MS, rng))
        if u % 5 == 0:
            mine.append(review_record(user, rng.randrange(n_items), WINDOW_END_MS + rng.randint(0, 30) * DAY_MS, rng))
        if u % 4 == 0:  # the same item reviewed again a day later (dedup keeps the first)
            mine.append(dict(mine[0], timestamp=mine[0]["timestamp"] + DAY_MS))
        out.extend(mine)
    rng.shuffle(out)  # raw files are not sorted by user
    return out


def _write(path: Path, records: list[dict], extra: list[str | bytes] | None, truncate: int | None) -> None:
    data = b"".join(json.dumps(r).encode() + b"\n" for r in records)
    for line in extra or []:
        data += (line if isinstance(line, bytes) else line.encode()) + b"\n"
    blob = gzip.compress(data, mtime=0)
    if truncate:
        blob = blob[: len(blob) - truncate]
    path.write_bytes(blob)


def write_category(
    directory: str | Path,
    category: str = "Video_Games",
    n_users: int = 60,
    n_items: int = 75,
    seed: int = 0,
    reviews: list[dict] | None = None,
    extra_review_lines: list[str | bytes] | None = None,
    extra_meta_lines: list[str | bytes] | None = None,
    truncate_reviews: int | None = None,
) -> tuple[Path, Path]:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed + 1)
    meta = [meta_record(i, rng) for i in range(n_items)]
    rpath, mpath = d / f"{category}.jsonl.gz", d / f"meta_{category}.jsonl.gz"
    _write(rpath, reviews if reviews is not None else reviews_for(n_users, n_items, seed), extra_review_lines, truncate_reviews)
    _write(mpath, meta, extra_meta_lines, None)
    return rpath, mpath
