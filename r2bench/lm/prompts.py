"""What every LLM method shows of an instance: the user context, the items, and the Figure 2 template.

The user context (profile, then the history oldest first with dates, titles and key
fields) and the item texts are rendered here for every LLM method: R2Rank, TALLRec,
the API baselines (listwise, pointwise, reflective), Prompt4NR, R2ec. Each method wraps
them in its own instruction; the candidate always comes **last**, so the 20 prompts of
an instance share everything up to the candidate (which is what the shared-prefix KV
cache, ``r2bench.lm.kvcache``, and servers' prefix caching exploit).

Why R2Rank's self-reflective template (paper Figure 2: ``TASK_TEXT``,
``REQUIREMENTS_TEXT``, ``reflective_messages``) lives here and not in ``r2bench/r2rank/``:
it is not R2Rank's alone. The zero-shot ``llm-reflective`` baseline
(``baselines/llm_api.py``) asks an API model with exactly the prompt R2Rank is trained
and scored on (the paper's comparison needs the two identical, so there must be one
definition), and no module under ``baselines/`` may import ``r2bench.r2rank`` (baselines
sit beside R2Rank, on the shared layer; ``tests/core/test_import_graph.py``). A template
is text, not model code, so sharing it costs the layer nothing. What stays R2Rank's own
is how it is *read*: the decision position, the head, the zero-shot margin
(``r2bench.r2rank.decision``, ``r2bench.r2rank.head``).

The Figure 2 prompt is one user chat message: the task and requirements (verbatim from
Figure 2), then the user context, then the candidate item. One template for every
domain; only the fields differ.

Length is bounded by truncating field values (``PromptLimits``):

- a title keeps at most ``title_words`` words;
- in the history, each item shows its date, its title and its other text fields,
  each cut to ``history_field_words`` words, the whole line to ``history_item_words``
  words (so 20 history items cost a few hundred tokens at most);
- the candidate shows every text field cut to ``item_field_words`` words, the whole
  text to ``item_words`` words;
- a profile value keeps at most ``profile_value_words`` words.

Cut text ends with ``...``. Empty/null fields are skipped. Dates are UTC ``YYYY-MM-DD``.

Public API (used by R2Rank and by the baselines):
``render_user_profile``, ``render_history``, ``render_item``, ``render_context``,
``reflective_messages``, ``instance_prompt`` (-> ``InstancePrompt``: the shared
context + one item text per candidate). The answer format the prompt asks for
(``RECOMMEND``, ``parse_decision``...) lives in :mod:`r2bench.answer`.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The answer format is a contract shared with r2bench.llm; re-exported here for the prompt's users.
from r2bench.answer import ANSWER_CLOSE, ANSWER_OPEN, NOT_RECOMMEND, RECOMMEND, parse_decision  # noqa: F401

#: Figure 2, verbatim (the opening line and the requirements).
TASK_TEXT = (
    "You are a recommendation assistant. Analyze the user's history in depth and decide "
    "whether to recommend the candidate item."
)
REQUIREMENTS_TEXT = (
    "Requirements: Generate a response with the following three parts in order:\n"
    "#Initial reasoning: thoroughly analyze relevant evidence from USER CONTEXT and CANDIDATE ITEM.\n"
    "#Self-check: identify mistakes, missing evidence, uncertainties, or over-weighted signals "
    "in the initial reasoning.\n"
    "#Final conclusion and suggestion: produce a concise final rationale and decision.\n"
    "Finally output: <answer>Recommend</answer> or <answer>Not Recommend</answer>."
)
#: The no-reasoning variant (``no_cot``; used by ablations): decide directly.
DIRECT_REQUIREMENTS_TEXT = (
    "Requirements: Do not explain. Output only the decision: "
    "<answer>Recommend</answer> or <answer>Not Recommend</answer>."
)

_SKIP_FIELDS = frozenset({"item_id", "title"})


@dataclass(frozen=True)
class PromptLimits:
    """Word budgets that bound the prompt length (see the module docstring)."""

    title_words: int = 20
    history_field_words: int = 8
    history_item_words: int = 30
    item_field_words: int = 60
    item_words: int = 150
    profile_value_words: int = 10


DEFAULT_LIMITS = PromptLimits()


def truncate_words(text: Any, max_words: int) -> str:
    """``text`` as a single-line string of at most ``max_words`` words (``...`` marks a cut)."""
    words = str(text).split()
    if len(words) <= max_words:
        return " ".join(words)
    return " ".join(words[:max_words]) + " ..."


def _label(name: str) -> str:
    return name.replace("_", " ").strip()


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, float) and value != value:  # NaN
        return False
    if isinstance(value, (list, tuple)):
        return any(_present(v) for v in value)
    return str(value).strip() not in ("", "None", "null", "nan")


def _value_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value if _present(v))
    return str(value)


def format_date(ms: int | None) -> str:
    """UTC ``YYYY-MM-DD`` from milliseconds since the epoch ("unknown date" for null)."""
    if ms is None:
        return "unknown date"
    return _dt.datetime.fromtimestamp(int(ms) / 1000, tz=_dt.timezone.utc).strftime("%Y-%m-%d")


def render_item(
    item_record: Mapping[str, Any] | None,
    *,
    field_words: int | None = None,
    max_words: int | None = None,
    limits: PromptLimits = DEFAULT_LIMITS,
) -> str:
    """One item as ``Title (field: value; field: value)``, bounded by the limits.

    ``item_record`` is a row of ``items.parquet`` (``title`` + text fields); fields are
    shown in the record's order. Defaults are the candidate budgets; the history uses
    tighter ones. An unknown item renders as ``(unknown item)``.
    """
    if not item_record:
        return "(unknown item)"
    field_words = limits.item_field_words if field_words is None else field_words
    max_words = limits.item_words if max_words is None else max_words
    title = item_record.get("title")
    title = truncate_words(title, limits.title_words) if _present(title) else "(untitled)"
    parts = [
        f"{_label(k)}: {truncate_words(_value_text(v), field_words)}"
        for k, v in item_record.items()
        if k not in _SKIP_FIELDS and _present(v)
    ]
    text = f"{title} ({'; '.join(parts)})" if parts else title
    return truncate_words(text, max_words) if len(text.split()) > max_words else text


def render_history(
    history: Sequence[str],
    timestamps: Sequence[int] | None,
    item_records: Mapping[str, Mapping[str, Any]],
    limits: PromptLimits = DEFAULT_LIMITS,
) -> str:
    """The interaction history, oldest first, one numbered line per item with its date."""
    if not history:
        return "(no interactions yet)"
    ts = list(timestamps) if timestamps is not None else [None] * len(history)
    lines = []
    for i, (item_id, t) in enumerate(zip(history, ts), start=1):
        text = render_item(
            item_records.get(item_id),
            field_words=limits.history_field_words,
            max_words=limits.history_item_words,
            limits=limits,
        )
        lines.append(f"{i}. [{format_date(t)}] {text}")
    return "\n".join(lines)


def render_user_profile(
    row: Mapping[str, Any], profile_fields: Sequence[str], limits: PromptLimits = DEFAULT_LIMITS
) -> str:
    """``field: value; ...`` from the instance's ``profile_<field>`` columns ("" when none)."""
    parts = []
    for name in profile_fields:
        value = row.get(f"profile_{name}")
        if _present(value):
            parts.append(f"{_label(name)}: {truncate_words(value, limits.profile_value_words)}")
    return "; ".join(parts)


def render_context(profile: str, history_text: str) -> str:
    """The ``User Context`` block: the profile (when there is one) and the history."""
    lines = ["User Context:"]
    if profile:
        lines.append(f"Profile: {profile}")
    lines.append("History (oldest first):")
    lines.append(history_text)
    return "\n".join(lines)


def reflective_messages(context: str, item_text: str, no_cot: bool = False) -> list[dict[str, str]]:
    """The Figure 2 prompt as chat messages (one user message; the candidate comes last).

    ``context`` is ``render_context(...)``'s output; ``no_cot`` swaps the three-part
    requirements for "output only the decision".
    """
    requirements = DIRECT_REQUIREMENTS_TEXT if no_cot else REQUIREMENTS_TEXT
    content = f"{TASK_TEXT}\n\n{requirements}\n\n{context}\n\nCandidate Item: {item_text}"
    return [{"role": "user", "content": content}]


@dataclass
class InstancePrompt:
    """The prompt parts of one instance: the shared user context and one text per candidate."""

    instance_id: int
    context: str
    candidates: list[str]
    item_texts: list[str]
    no_cot: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def messages(self, k: int) -> list[dict[str, str]]:
        return reflective_messages(self.context, self.item_texts[k], no_cot=self.no_cot)

    def all_messages(self) -> list[list[dict[str, str]]]:
        return [self.messages(k) for k in range(len(self.candidates))]


def instance_prompt(
    row: Mapping[str, Any],
    item_records: Mapping[str, Mapping[str, Any]],
    profile_fields: Sequence[str] = (),
    *,
    no_cot: bool = False,
    limits: PromptLimits = DEFAULT_LIMITS,
    candidates: Sequence[str] | None = None,
) -> InstancePrompt:
    """Build the prompt parts of an ``instances.parquet`` row (a dict from ``iter_rows(named=True)``).

    ``candidates`` overrides the row's candidate list (e.g. to score a subset).
    """
    profile = render_user_profile(row, profile_fields, limits)
    history = render_history(row.get("history") or [], row.get("history_timestamps"), item_records, limits)
    cands = list(candidates if candidates is not None else row["candidates"])
    texts = [render_item(item_records.get(c), limits=limits) for c in cands]
    return InstancePrompt(
        instance_id=int(row.get("instance_id", -1)),
        context=render_context(profile, history),
        candidates=cands,
        item_texts=texts,
        no_cot=no_cot,
    )
