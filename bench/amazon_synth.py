"""Synthetic Amazon Reviews 2023 raw files in the real schema, at Video_Games scale.

Used by ``bench/prepare_amazon.py``. The defaults aim at the issue's hidden file
(4.63M reviews, about 2.16M in-window interactions and 1.59M instances after
construction): reviews inside the window [2021-10-01, 2023-10-01) come from a
population of active users (most of them with several reviews there), reviews
before it from the whole, heavy-tailed user population (some of them earlier
reviews of the same pairs, which the dedup must see). Review texts are drawn from a
pool of distinct texts with a log-normal word count (median 24 words, mean about
50, a long tail), with escaped quotes, line breaks, HTML and non-ASCII characters;
some reviews carry images. Metadata lines have the real fields with lists of
features, description paragraphs, images and a ``details`` object.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np
import polars as pl

WINDOW_START_MS = 1_633_046_400_000  # 2021-10-01
WINDOW_END_MS = 1_696_118_400_000  # 2023-10-01
FIRST_MS = 915_148_800_000  # 1999-01-01
_SYLLABLES = "ga me pla y con tro ller gra phic sto ry fun kid lo ve pri ce bat te ry on li ne le vel boss ea sy ha rd".split()
_EXTRA = ["it's", "don't", "\"great\"", "<br />", "5/5", "10/10", "café", "naïve", "’", "🙂", "👍", "!!", "...", "(PS5)", "(Switch)"]


def _vocab(rng: np.random.Generator, n: int = 4000) -> np.ndarray:
    words = {"".join(rng.choice(_SYLLABLES, size=int(k))) for k in rng.integers(1, 4, size=3 * n)}
    return np.array(sorted(words)[:n] + _EXTRA, dtype=object)


def text_pool(rng: np.random.Generator, n: int, median_words: float = 24.0, sigma: float = 1.2) -> list[str]:
    """``n`` distinct review texts: Zipf-like word use, log-normal length, some line breaks."""
    vocab = _vocab(rng)
    p = 1.0 / np.arange(1, len(vocab) + 1) ** 1.1
    p /= p.sum()
    lengths = np.clip(rng.lognormal(np.log(median_words), sigma, size=n), 1, 2000).astype(int)
    words = rng.choice(vocab, size=int(lengths.sum()), p=p)
    out, at = [], 0
    for i, k in enumerate(lengths):
        t = " ".join(words[at : at + k])
        at += k
        if i % 7 == 0 and k > 30:
            t = t.replace(" ", "\n\n", 1)
        out.append(t.capitalize() + ".")
    return out


def write_reviews(path: Path, n: int, n_items: int, n_users: int, in_window: float, window_users: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pool = pl.Series(text_pool(rng, 200_000))
    titles = pl.Series(["Five Stars", "Great game", "Works", "Not as described", "Love it", "Meh", "Four Stars",
                        "Fun for the whole family", "Disappointed", "My son loves it", "Controller broke after a week"])
    image = [{"small_image_url": "https://m.media-amazon.com/images/I/71abcdEFGh._SL256_.jpg",
              "medium_image_url": "https://m.media-amazon.com/images/I/71abcdEFGh._SL800_.jpg",
              "large_image_url": "https://m.media-amazon.com/images/I/71abcdEFGh._SL1600_.jpg",
              "attachment_type": "IMAGE"}]
    images = pl.Series([[], image], dtype=pl.List(pl.Struct({k: pl.String for k in image[0]})))
    chunk = 250_000
    with gzip.open(path, "wb", compresslevel=1) if path.name.endswith(".gz") else open(path, "wb") as out:
        for lo in range(0, n, chunk):
            m = min(chunk, n - lo)
            inside = rng.random(m) < in_window
            # active users inside the window, the heavy-tailed whole population before it
            user = np.where(inside, window_users * rng.random(m) ** 1.2, n_users * rng.random(m) ** 2.2).astype(np.int64)
            item = (n_items * rng.random(m) ** 1.8).astype(np.int64)  # popular items
            before = WINDOW_START_MS - ((WINDOW_START_MS - FIRST_MS) * rng.random(m) ** 1.5).astype(np.int64)
            within = rng.integers(WINDOW_START_MS, WINDOW_END_MS, size=m)
            df = pl.DataFrame(
                {
                    "rating": rng.integers(1, 6, size=m).astype(np.float64),
                    "title": titles.gather(rng.integers(0, len(titles), size=m)),
                    "text": pool.gather(rng.integers(0, len(pool), size=m)),
                    "images": images.gather((rng.random(m) < 0.06).astype(np.int64)),
                    "asin": pl.Series(item * 3 + rng.integers(0, 3, size=m)).cast(pl.String).str.zfill(9).str.replace(r"^", "A"),
                    "parent_asin": pl.Series(item).cast(pl.String).str.zfill(9).str.replace(r"^", "B"),
                    "user_id": pl.Series(user).cast(pl.String).str.zfill(26).str.replace(r"^", "AG"),
                    "timestamp": np.where(inside, within, before),
                    "helpful_vote": rng.geometric(0.6, size=m) - 1,
                    "verified_purchase": rng.random(m) < 0.8,
                }
            )
            buf = io.BytesIO()
            df.write_ndjson(buf)
            out.write(buf.getvalue())


def write_meta(path: Path, n_items: int, seed: int) -> None:
    rng = np.random.default_rng(seed + 1)
    descs = text_pool(rng, 5000, median_words=60, sigma=0.8)
    feats = text_pool(rng, 2000, median_words=8, sigma=0.5)
    opener = (lambda: gzip.open(path, "wt", compresslevel=1, encoding="utf-8")) if path.name.endswith(".gz") else (
        lambda: open(path, "w", encoding="utf-8"))
    with opener() as f:
        for i in range(n_items):
            title = f"Video Game Title {i} &amp; Bundle"
            if i % 50 == 3:
                title = ""
            elif i % 50 == 7:
                title = " ".join(["long"] * 30)
            k = int(rng.integers(1, 8))
            rec = {
                "main_category": "Video Games",
                "title": title,
                "average_rating": round(float(rng.uniform(1, 5)), 1),
                "rating_number": int(rng.integers(0, 20000)),
                "features": [feats[(i * 13 + j) % 2000] for j in range(int(rng.integers(0, 8)))],
                "description": [descs[(i * 7 + j) % 5000] for j in range(int(rng.integers(0, 4)))],
                "price": [19.99, None, "None", 59.99][i % 4],
                "images": [{"thumb": f"https://m.media-amazon.com/images/I/{i:08d}{j}._SS40_.jpg",
                            "large": f"https://m.media-amazon.com/images/I/{i:08d}{j}.jpg",
                            "variant": "MAIN" if j == 0 else f"PT0{j}", "hi_res": None} for j in range(k)],
                "videos": [],
                "store": f"Studio {i % 300}",
                "categories": ["Video Games", "PlayStation 4", "Games"] if i % 3 else [],
                "details": {"Release date": "2019", "Rated": "Everyone", "Item Weight": "2.4 ounces"} if i % 2
                else json.dumps({"Release date": "2019"}),
                "parent_asin": f"B{i:09d}",
                "bought_together": None,
            }
            f.write(json.dumps(rec) + "\n")
