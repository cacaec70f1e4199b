"""Per-call records and per-run totals (tokens, latency, failures, cost)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class CallResult:
    """What one request produced: the answer (thinking kept apart) and its accounting.

    ``ok`` is True only for a successful, complete answer (the only kind cached).
    A failed request still carries what could be read (e.g. a truncated answer's
    text) so a parser may use it, with ``error`` saying what went wrong.
    """

    key: str
    ok: bool = False
    answer: str | None = None
    reasoning: str | None = None
    finish_reason: str | None = None
    #: what stopped the generation where the server says (vLLM: the stop string, a token id, or None for EOS)
    stop_reason: str | int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    latency_s: float = 0.0
    attempts: int = 0
    cached: bool = False
    #: failure kind: "rate_limit", "server_error", "timeout", "connection", "invalid_json",
    #: "empty", "truncated", "client_error" (4xx), or None
    error: str | None = None
    error_detail: str | None = None
    #: seconds waited before each retry (Retry-After or backoff)
    waits: list[float] = field(default_factory=list)
    #: per generated token: {"token", "logprob", "top": [[token, logprob], ...]} when requested
    logprobs: list[dict[str, Any]] | None = None

    def to_cache(self) -> dict[str, Any]:
        """The part worth keeping for a re-run (no timing of this process, no retry log)."""
        d = asdict(self)
        for k in ("key", "cached", "waits", "attempts", "error", "error_detail", "ok"):
            d.pop(k)
        return d

    @classmethod
    def from_cache(cls, key: str, data: dict[str, Any]) -> "CallResult":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(key=key, ok=True, cached=True, **known)


def summarize(results: list[CallResult], price_in: float | None = None, price_out: float | None = None) -> dict[str, Any]:
    """Totals for ``run.json``: calls, cache hits, failures by kind, tokens, latency, cost.

    Tokens and cost count only requests sent in this run (a cache hit costs
    nothing); ``cached_*`` totals show what the cache saved.
    """
    fresh = [r for r in results if not r.cached]
    cached = [r for r in results if r.cached]
    failures = Counter(r.error for r in results if r.error)
    lat = sorted(r.latency_s for r in fresh if r.attempts)
    out: dict[str, Any] = {
        "calls": len(results),
        "cache_hits": len(cached),
        "sent": len(fresh),
        "ok": sum(r.ok for r in results),
        "failed": sum(not r.ok for r in results),
        "failures": dict(sorted(failures.items())),
        "retries": sum(max(r.attempts - 1, 0) for r in fresh),
        "prompt_tokens": sum(r.prompt_tokens for r in fresh),
        "completion_tokens": sum(r.completion_tokens for r in fresh),
        "reasoning_tokens": sum(r.reasoning_tokens for r in fresh),
        "cached_prompt_tokens": sum(r.prompt_tokens for r in cached),
        "cached_completion_tokens": sum(r.completion_tokens for r in cached),
        "latency_s_mean": (sum(lat) / len(lat)) if lat else None,
        "latency_s_p50": lat[len(lat) // 2] if lat else None,
        "finish_reasons": dict(sorted(Counter(str(r.finish_reason) for r in results).items())),
    }
    if price_in is not None and price_out is not None:
        out["cost"] = (out["prompt_tokens"] * price_in + out["completion_tokens"] * price_out) / 1e6
        out["cost_without_cache"] = (
            (out["prompt_tokens"] + out["cached_prompt_tokens"]) * price_in
            + (out["completion_tokens"] + out["cached_completion_tokens"]) * price_out
        ) / 1e6
    return out
