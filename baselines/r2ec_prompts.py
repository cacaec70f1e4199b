"""R2ec's prompts (You et al., 2025; ``YRYangang/RRec``, ``prompters/prompts.py`` and ``rrec_prompter.py``).

- **User** (``UserGenPrompter``/``UserPrompter``): one user message, the instruction

      Analyze in depth and finally recommend next {singular} I might {verb} inside <answer> and </answer>.
      For example, <answer>a {example}</answer>.

      Below is my historical {plural} {verb_noun} and ratings (out of 5):

  then the last ``window`` history items, oldest first, one line each
  ``{time before the target} ago: [{title}] ({rating})`` (``get_items_str`` with
  ``just_title=True``; times as ``format_timedelta``: ``3d 4.5h``, ``2h 10.0min``,
  ``7.5min``). The model reasons after the assistant turn opens and stops at
  ``<answer>``; the user's embedding is the last hidden state there.
- **Item** (``ItemPrompter``): ``Summarize key attributes of the following {singular}
  inside <answer> and </answer>.``, a blank line, ``Title: ...`` and one ``Field: value``
  line per text field of the item (cut to 100 words, as the released description),
  and an assistant turn pre-filled with ``<answer>`` (``continue_final_message``): the
  last hidden state is the item's embedding.

The released prompts name an Amazon category (``CDs and vinyl`` / ``CD or vinyl``,
"purchase", "a product"); :func:`domain_words` gives those for Amazon benchmarks and
movie words for MovieLens. Released Amazon items show "User Rating" and "Number of
Buyers" from the product metadata; here an item shows the text fields the benchmark
has (Amazon's metadata fields where present, year and genres on MovieLens).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"
DESCRIPTION_MAX_WORDS = 100  # released DESCRIPTION_MAX_LEN

USER_PROMPT = (
    "Analyze in depth and finally recommend next {singular} I might {verb} inside {open} and {close}.\n"
    "For example, {open}a {example}{close}.\n\n"
    "Below is my historical {plural} {verb_noun} and ratings (out of 5):"
)
ITEM_PROMPT = "Summarize key attributes of the following {singular} inside {open} and {close}."


@dataclass(frozen=True)
class DomainWords:
    singular: str
    plural: str
    verb: str
    verb_noun: str
    example: str


def domain_words(benchmark_name: str) -> DomainWords:
    """The words the released prompts fill per category (Amazon) and their MovieLens counterparts."""
    name = benchmark_name.lower()
    if "movielens" in name:
        return DomainWords("movie", "movie", "watch", "views", "movie")
    if name.startswith("amazon"):
        cat = name.split("-", 1)[1].replace("-", " ").replace("_", " ") if "-" in name else "products"
        return DomainWords(cat, cat, "purchase", "purchases", "product")
    return DomainWords("item", "item", "choose", "choices", "item")


def format_timedelta(delta: _dt.timedelta) -> str:
    """Released ``format_timedelta``: ``3d 4.5h ago``, ``2h 10.0min ago``, ``7.5min ago``."""
    days = delta.days
    hours, rem = divmod(delta.seconds, 3600)
    minutes, seconds = divmod(rem, 60)
    minutes += seconds / 60
    if days > 0:
        text = f"{days}d {hours + minutes / 60:.1f}h"
    elif hours > 0:
        text = f"{hours}h {minutes:.1f}min"
    else:
        text = f"{minutes:.1f}min"
    return text + " ago"


def _rating_text(r: Any) -> str:
    if r is None:
        return ""
    f = float(r)
    return f" ({f:.1f})" if f != int(f) else f" ({int(f)}.0)"


def user_message(row: Mapping[str, Any], titles: Mapping[str, str], ratings: Mapping[tuple[str, str], float],
                 words: DomainWords, window: int = 20) -> str:
    """The user prompt of an instance: instruction + the last ``window`` history lines, oldest first."""
    hist = list(row.get("history") or [])
    ts = list(row.get("history_timestamps") or [None] * len(hist))
    start = max(0, len(hist) - window)
    target_ms = row.get("target_timestamp")
    lines = []
    for item, t in zip(hist[start:], ts[start:]):
        when = (format_timedelta(_dt.timedelta(milliseconds=int(target_ms) - int(t)))
                if target_ms is not None and t is not None else "some time ago")
        rating = _rating_text(ratings.get((str(row.get("user_id")), item)))
        lines.append(f"{when}: [{titles.get(item, '(unknown item)')}]{rating}")
    head = USER_PROMPT.format(singular=words.singular, plural=words.plural, verb=words.verb,
                              verb_noun=words.verb_noun, example=words.example, open=ANSWER_OPEN, close=ANSWER_CLOSE)
    return head + "\n" + "\n".join(lines)


def item_message(record: Mapping[str, Any] | None, words: DomainWords) -> str:
    """The item prompt: instruction, blank line, ``Title: ...`` and one ``Field: value`` line per text field."""
    rec = dict(record or {})
    lines = [f"Title: {rec.get('title') or '(untitled)'}"]
    for k, v in rec.items():
        if k in ("item_id", "title") or v is None or str(v).strip() in ("", "None", "nan"):
            continue
        val = " ".join(str(v).split())
        w = val.split()
        if len(w) > DESCRIPTION_MAX_WORDS:
            val = " ".join(w[:DESCRIPTION_MAX_WORDS]) + "..."
        lines.append(f"{k.replace('_', ' ').strip().capitalize()}: {val}")
    return ITEM_PROMPT.format(singular=words.singular, open=ANSWER_OPEN, close=ANSWER_CLOSE) + "\n\n" + "\n".join(lines)


def user_ratings(interactions, user_ids: Sequence[str]) -> dict[tuple[str, str], float]:
    """(user, item) -> rating for the given users (empty when the benchmark has no ratings)."""
    import polars as pl

    if "rating" not in interactions.columns:
        return {}
    df = interactions.filter(pl.col("user_id").is_in(list({str(u) for u in user_ids})))
    return {(u, i): r for u, i, r in df.select("user_id", "item_id", "rating").iter_rows() if r is not None}


def close_reasoning(tokenizer: Any, ids: Sequence[int], open_ids: Sequence[int]) -> tuple[list[int], bool]:
    """The reasoning cut at its first ``<answer>`` (kept) or, when it never wrote one, with ``<answer>`` appended.

    Returns ``(ids ending in <answer>, whether the model wrote it)``. The released code
    stops generation at ``<answer>`` (vLLM ``stop`` with the stop string kept) and
    appends it to reasonings that lack it (``UserPrompter.to_chat_example``).
    """
    ids = list(ids)
    if ANSWER_OPEN not in tokenizer.decode(ids):
        return ids + list(open_ids), False
    for k in range(1, len(ids) + 1):
        head = tokenizer.decode(ids[:k])
        if ANSWER_OPEN in head:
            if head.endswith(ANSWER_OPEN):
                return ids[:k], True
            return ids[: k - 1] + list(open_ids), True  # the tag merged into a longer token: rewrite it
    return ids + list(open_ids), False  # pragma: no cover - decode(ids) contained it
