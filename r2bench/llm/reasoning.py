"""Keep a reasoning model's thinking apart from its answer.

Servers expose the thinking in one of two ways: a separate message field
(``reasoning_content`` for DeepSeek and vLLM, ``reasoning`` for some gateways), or
inline in the content between ``<think>`` and ``</think>``. Parsers must only ever
see the answer, otherwise a candidate the model merely *considered* in its
thinking would be read as part of its ranking.
"""

from __future__ import annotations

import re
from typing import Any

_THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)
_OPEN = re.compile(r"<think>", re.IGNORECASE)
_CLOSE = re.compile(r"</think>", re.IGNORECASE)

REASONING_FIELDS = ("reasoning_content", "reasoning")


def split_reasoning(content: str | None, message: dict[str, Any] | None = None) -> tuple[str, str | None]:
    """Return ``(answer, reasoning)`` from a chat message.

    - a ``reasoning_content`` / ``reasoning`` field is taken as is;
    - every closed ``<think>...</think>`` block is moved out of the content;
    - a lone ``</think>`` (models whose template opens the block in the prompt)
      makes everything before it reasoning;
    - an unclosed ``<think>`` (a truncated answer) makes everything after it
      reasoning, leaving no answer.
    """
    text = content or ""
    parts: list[str] = []
    if message:
        for name in REASONING_FIELDS:
            value = message.get(name)
            if isinstance(value, str) and value.strip():
                parts.append(value.strip())
                break
    blocks = [m.strip() for m in _THINK_BLOCK.findall(text)]
    text = _THINK_BLOCK.sub("", text)
    parts.extend(b for b in blocks if b)
    close = list(_CLOSE.finditer(text))
    if close:
        last = close[-1]
        before = text[: last.start()].strip()
        if before:
            parts.append(before)
        text = text[last.end():]
    open_ = _OPEN.search(text)
    if open_:
        after = text[open_.end():].strip()
        if after:
            parts.append(after)
        text = text[: open_.start()]
    reasoning = "\n\n".join(parts) if parts else None
    return text.strip(), reasoning
