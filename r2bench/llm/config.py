"""The client settings, shared by every LLM method's config (they inherit it).

Only the *name* of the environment variable holding the API key is configured;
the key itself is read at connection time and never stored in a config, a run
file, a log line, a cache key or a repr.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlparse

from r2bench.errors import R2BenchError

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
#: what local OpenAI-compatible servers (llama.cpp, vLLM without --api-key) accept
DUMMY_KEY = "sk-no-key-required"


@dataclass
class ClientConfig:
    """How to reach an OpenAI-compatible chat endpoint and how to sample from it."""

    #: the endpoint, up to ``/v1`` (a hosted API, vLLM, SGLang, or ``r2bench serve-local``)
    base_url: str = "http://127.0.0.1:8080/v1"
    #: the model name the server expects (``r2bench serve-local`` serves ``smollm2``)
    model: str = "smollm2"
    #: name of the environment variable that holds the API key (never the key)
    api_key_env: str = "OPENAI_API_KEY"
    #: requests in flight at once
    concurrency: int = 4
    #: seconds for one attempt (connect + wait for the whole answer)
    timeout_s: float = 300.0
    #: retries after the first attempt, for 429, 5xx, timeouts, bad JSON, empty answers
    max_retries: int = 5
    #: first wait before a retry; it doubles with each attempt (full jitter)
    backoff_base_s: float = 1.0
    #: longest wait between two attempts
    backoff_max_s: float = 60.0
    #: longest Retry-After the client honours before giving up on the request
    max_retry_after_s: float = 300.0
    #: sampling temperature (0: greedy)
    temperature: float = 0.0
    #: nucleus sampling; none leaves it to the server
    top_p: float | None = None
    #: longest answer, in tokens (an answer cut there counts as truncated, and is parsed)
    max_tokens: int = 1024
    #: sent as the request's ``seed``; None means "the method's --seed"
    request_seed: int | None = None
    #: response cache (SQLite); off means every request goes to the server
    cache: bool = True
    #: cache file; empty means $R2BENCH_HOME/cache/llm_responses.sqlite
    cache_path: str = ""
    #: optional price table, in currency units per 1M tokens (cost is reported when both are set)
    price_input_per_1m: float | None = None
    #: price of 1M completion tokens (see ``price_input_per_1m``)
    price_output_per_1m: float | None = None


def is_local(base_url: str) -> bool:
    host = (urlparse(base_url).hostname or "").lower()
    return host in LOCAL_HOSTS


def resolve_api_key(cfg: ClientConfig) -> str:
    """The key from the environment; a dummy for local servers; an error otherwise."""
    key = os.environ.get(cfg.api_key_env, "") if cfg.api_key_env else ""
    if key:
        return key
    if is_local(cfg.base_url):
        return DUMMY_KEY
    raise R2BenchError(
        f"no API key for {cfg.base_url}: set the environment variable {cfg.api_key_env or 'OPENAI_API_KEY'} "
        "(or --set api_key_env=NAME_OF_YOUR_VARIABLE)"
    )
