"""The answer format: how a model states its decision, shared by every producer and reader of it.

The R2Rank prompt (``r2bench.lm.prompts``) asks for it, the R2Rank model's
scoring head reads the token after :data:`ANSWER_OPEN`, SFT data synthesis keeps
teacher answers by it, and the LLM-API baselines (``r2bench.llm.parse``) parse it:
``<answer>Recommend</answer>`` or ``<answer>Not Recommend</answer>``.
"""

from __future__ import annotations

import re

RECOMMEND = "Recommend"
NOT_RECOMMEND = "Not Recommend"
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"

_ANSWER_RE = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.IGNORECASE | re.DOTALL)


def parse_decision(text: str) -> str | None:
    """The decision in the last ``<answer>...</answer>`` of ``text``: RECOMMEND, NOT_RECOMMEND or None."""
    answers = _ANSWER_RE.findall(text or "")
    if not answers:
        return None
    ans = re.sub(r"[^a-z ]", "", answers[-1].lower()).strip()
    ans = " ".join(ans.split())
    if ans == "recommend":
        return RECOMMEND
    if ans in ("not recommend", "dont recommend", "do not recommend"):
        return NOT_RECOMMEND
    return None
