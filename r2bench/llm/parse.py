"""Turning answers into scores: listwise rankings, yes/no logprobs, reflective decisions.

Parsers only ever see the answer (the thinking is split off by the client).
"""

from __future__ import annotations

import difflib
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from r2bench.answer import NOT_RECOMMEND, RECOMMEND, parse_decision

VALID, PARTIAL, UNUSABLE = "valid", "partial", "unusable"

_ID = re.compile(r"\[(\d{1,4})\]")
_SPLIT = re.compile(r"\n|>|→|\u2192|;")
_BULLET = re.compile(r"^\s*(?:(?:rank\s*)?\d{1,3}\s*[.):\-]|[-*•])\s*", re.IGNORECASE)
_PAREN_TAIL = re.compile(r"(\s*[(\[][^()\[\]]*[)\]])+\s*$")
_LISTISH = re.compile(r"^\s*(?:\d{1,3}\s*[.):]|[-*•])")


def normalize_title(text: str) -> str:
    """Case-, accent- and punctuation-insensitive form used to compare titles."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


@dataclass
class RankingParse:
    """What a listwise answer ranked, as positions into the presented candidate list."""

    order: list[int] = field(default_factory=list)
    by_id: int = 0
    by_title: int = 0
    by_fuzzy: int = 0
    duplicates: int = 0
    hallucinated: int = 0
    n_candidates: int = 0

    @property
    def status(self) -> str:
        if len(self.order) == self.n_candidates and self.n_candidates > 0:
            return VALID
        return PARTIAL if self.order else UNUSABLE


def parse_ranking(answer: str | None, titles: Sequence[str], fuzzy_cutoff: float = 0.85) -> RankingParse:
    """Read a ranking of the candidates ``titles`` (presented as ``[1]..[K]``) from ``answer``.

    Segment by segment (lines and ``>`` separators), in the order they appear:
    identifiers ``[n]`` first; a segment without one is matched to a title, exactly
    (normalized title contained in the segment; the longest wins) or, failing that,
    fuzzily (``difflib`` ratio >= ``fuzzy_cutoff`` against the not-yet-ranked titles).
    Repeats are dropped (counted in ``duplicates``); identifiers outside 1..K and
    list entries that match no candidate are ignored (counted in ``hallucinated``).
    """
    k = len(titles)
    out = RankingParse(n_candidates=k)
    if not answer:
        return out
    # each title also in a short form without trailing "(...)" parts such as a year
    forms = [
        {f for f in (normalize_title(t or ""), normalize_title(_PAREN_TAIL.sub("", t or ""))) if f}
        for t in titles
    ]
    seen: set[int] = set()

    def take(pos: int, how: str) -> None:
        if pos in seen:
            out.duplicates += 1
            return
        seen.add(pos)
        out.order.append(pos)
        setattr(out, how, getattr(out, how) + 1)

    uses_arrows = ">" in answer
    for raw in _SPLIT.split(answer):
        ids = _ID.findall(raw)
        if ids:
            for s in ids:
                n = int(s)
                if 1 <= n <= k:
                    take(n - 1, "by_id")
                else:
                    out.hallucinated += 1
            continue
        looks_like_entry = bool(_LISTISH.match(raw)) or uses_arrows
        seg = normalize_title(_BULLET.sub("", raw))
        if len(seg) < 2:
            continue
        exact = [
            (len(f), i) for i, fs in enumerate(forms) for f in fs if re.search(rf"(?<!\w){re.escape(f)}(?!\w)", seg)
        ]
        if exact:
            take(max(exact)[1], "by_title")
            continue
        best, best_i = 0.0, -1
        for i, fs in enumerate(forms):
            if i in seen or not fs:
                continue
            r = max(difflib.SequenceMatcher(None, seg, f).ratio() for f in fs)
            if r > best:
                best, best_i = r, i
        if best >= fuzzy_cutoff:
            take(best_i, "by_fuzzy")
        elif looks_like_entry:
            out.hallucinated += 1
    return out


def ranking_scores(order: Sequence[int], k: int) -> list[float]:
    """Score ``k - rank`` for ranked positions; every unranked candidate shares 0, the lowest."""
    scores = [0.0] * k
    for rank, pos in enumerate(order):
        scores[pos] = float(k - rank)
    return scores


# -- logprob helpers ------------------------------------------------------------------------------
def _logsumexp(values: Sequence[float]) -> float:
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def _norm_token(tok: str) -> str:
    return re.sub(r"^[\s>\"'*`]+|[\s.,!:;\"'*`]+$", "", tok or "").casefold()


def option_logprob_diff(
    position: dict[str, Any], is_pos: Any, is_neg: Any
) -> float | None:
    """logP(positive) - logP(negative) at one generated position, from its top logprobs.

    Variants of each option (``Yes``, `` yes``...) are summed. When only one side is
    among the top alternatives, the other is bounded by the least likely one shown.
    None when neither appears.
    """
    alts = position.get("top") or [[position.get("token", ""), position.get("logprob", 0.0)]]
    alts = [(t, lp) for t, lp in alts if lp is not None and math.isfinite(lp)]
    if not alts:
        return None
    pos = [lp for t, lp in alts if is_pos(_norm_token(t))]
    neg = [lp for t, lp in alts if is_neg(_norm_token(t))]
    if not pos and not neg:
        return None
    floor = min(lp for _, lp in alts)
    return (_logsumexp(pos) if pos else floor) - (_logsumexp(neg) if neg else floor)


def _is_yes(t: str) -> bool:
    return t == "yes"


def _is_no(t: str) -> bool:
    return t == "no"


def yes_no_score(answer: str | None, logprobs: list[dict[str, Any]] | None, max_positions: int = 4) -> tuple[float, str]:
    """Pointwise score: logprob(Yes) - logprob(No) at the first position offering either,
    else +1 / -1 from the answer's first yes/no word, else 0. Returns (score, source)."""
    for position in (logprobs or [])[:max_positions]:
        diff = option_logprob_diff(position, _is_yes, _is_no)
        if diff is not None:
            return diff, "logprob"
    m = re.search(r"\b(yes|no)\b", (answer or "").casefold())
    if m:
        return (1.0 if m.group(1) == "yes" else -1.0), "answer"
    return 0.0, "none"


_ANSWER_TAG = re.compile(r"<answer>", re.IGNORECASE)


def lenient_decision(answer: str | None) -> str | None:
    """``Recommend`` / ``Not Recommend`` from the last ``<answer>`` tag, closed or not."""
    decided = parse_decision(answer or "")
    if decided:
        return decided
    tags = list(_ANSWER_TAG.finditer(answer or ""))
    if not tags:
        return None
    rest = normalize_title((answer or "")[tags[-1].end():])
    if rest.startswith(("not", "don t", "do not")):
        return NOT_RECOMMEND
    if rest.startswith("recommend"):
        return RECOMMEND
    return None


def _is_rec(t: str) -> bool:
    return len(t) >= 2 and "recommend".startswith(t) or t == "recommend"


def _is_not(t: str) -> bool:
    return t in ("not", "no", "n", "don", "dont", "do") or t.startswith("not")


def decision_score(answer: str | None, logprobs: list[dict[str, Any]] | None) -> tuple[float, str | None, str]:
    """Reflective score: logP(Recommend) - logP(Not) at the token after the last ``<answer>``
    when logprobs are there, else +1 / -1 from the decision, else 0. Returns (score, decision, source)."""
    decision = lenient_decision(answer)
    if logprobs:
        text = "".join(p.get("token", "") for p in logprobs)
        tags = list(_ANSWER_TAG.finditer(text))
        if tags:
            end, offset = tags[-1].end(), 0
            for position in logprobs:
                tok = position.get("token", "")
                offset += len(tok)
                if offset > end and tok[len(tok) - (offset - end):].strip():
                    diff = option_logprob_diff(position, _is_rec, _is_not)
                    if diff is not None:
                        return diff, decision, "logprob"
                    break
    if decision is None:
        return 0.0, None, "none"
    return (1.0 if decision == RECOMMEND else -1.0), decision, "answer"
