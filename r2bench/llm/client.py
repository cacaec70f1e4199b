"""An async client for OpenAI-compatible chat endpoints, with cache, retries and accounting.

Built on ``openai.AsyncOpenAI`` with the SDK's own retries switched off
(``max_retries=0``): this client retries itself so it can count every attempt,
record what failed and honour ``Retry-After`` on 429 and 503.

- Retried: 429 (waits Retry-After when given), 408/409/5xx, timeouts, connection
  errors, bodies that are not valid JSON or lack ``choices``, empty answers.
  Waits are exponential backoff with full jitter when the server gives no hint.
- Not retried: a truncated answer (``finish_reason == "length"``: the same request
  would be cut again; its text is still returned), other 4xx.
- Fatal (raise ``R2BenchError`` at once): 401/403 (bad key), 404 (wrong base_url or
  model), since every further request would fail the same way.

Only ``ok`` results (HTTP 200, valid JSON, non-empty answer, not truncated) go to
the cache, each committed as soon as it arrives. A client made with
``allow_partial=True`` (R2Rank's reasonings, where a reasoning cut at the token budget
or an immediate stop is a normal outcome) also accepts and caches truncated and empty
answers.

Two endpoints: chat (``request``: ``messages``) and text completions
(``completion_request``: ``prompt``, a string or token ids), the latter for callers
that apply the chat template themselves. Server-specific fields (e.g. llama.cpp's
``repeat_penalty``, vLLM's ``return_tokens_as_token_ids`` and ``structured_outputs``)
travel in ``extra_body``, which is part of the request and of its cache key; so is
OpenAI's ``response_format``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import email.utils
import json
import logging
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from r2bench.errors import R2BenchError
from r2bench.llm.cache import ResponseCache, request_key
from r2bench.llm.config import ClientConfig, resolve_api_key
from r2bench.llm.reasoning import split_reasoning
from r2bench.llm.usage import CallResult, summarize

log = logging.getLogger(__name__)

RETRYABLE = {"rate_limit", "server_error", "timeout", "connection", "invalid_json", "empty"}


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _token_logprobs(choice: dict[str, Any]) -> list[dict[str, Any]] | None:
    lp = choice.get("logprobs")
    if isinstance(lp, dict) and isinstance(lp.get("tokens"), list):  # the completions format
        lps = lp.get("token_logprobs") or [None] * len(lp["tokens"])
        return [{"token": str(t), "logprob": float(v) if v is not None else float("-inf"), "top": []}
                for t, v in zip(lp["tokens"], lps)]
    content = lp.get("content") if isinstance(lp, dict) else None
    if not content:
        return None
    out = []
    for t in content:
        top = [[x.get("token", ""), float(x.get("logprob", float("-inf")))] for x in (t.get("top_logprobs") or [])]
        out.append({"token": t.get("token", ""), "logprob": float(t.get("logprob", float("-inf"))), "top": top})
    return out


class LLMClient:
    """Sends chat requests built by :meth:`request`; :meth:`run_batch` is the sync entry point."""

    def __init__(self, config: ClientConfig, seed: int = 0, cache: ResponseCache | None = None,
                 allow_partial: bool = False, cache_scope: str | None = None):
        self.config = config
        self.allow_partial = allow_partial
        #: hashed into every cache key, never sent: what the request does not say but the answer depends on,
        #: such as the weights behind a served model name (r2bench serves every local model as "smollm2")
        self.cache_scope = cache_scope
        self.seed = config.request_seed if config.request_seed is not None else seed
        if cache is None and config.cache:
            cache = ResponseCache(config.cache_path or None)
        self.cache = cache
        self.results: list[CallResult] = []
        self._jitter = random.Random()

    def __repr__(self) -> str:  # never the key
        return f"LLMClient(base_url={self.config.base_url!r}, model={self.config.model!r}, cache={self.cache!r})"

    # -- requests -------------------------------------------------------------------
    def request(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int | None = None,
        logprobs: bool = False,
        top_logprobs: int | None = None,
        stop: list[str] | None = None,
        response_format: dict[str, Any] | None = None,
        extra_body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A request: exactly the fields that determine the answer (hashed for the cache).

        ``response_format`` is OpenAI's field (e.g. a ``json_schema`` the answer must follow);
        ``extra_body`` carries server-specific fields, such as vLLM's ``structured_outputs``.
        """
        cfg = self.config
        req: dict[str, Any] = {
            "model": cfg.model,
            "messages": messages,
            "temperature": cfg.temperature,
            "max_tokens": int(max_tokens or cfg.max_tokens),
            "seed": int(self.seed),
        }
        if cfg.top_p is not None:
            req["top_p"] = cfg.top_p
        if logprobs:
            req["logprobs"] = True
            if top_logprobs:
                req["top_logprobs"] = int(top_logprobs)
        if stop:
            req["stop"] = list(stop)
        if response_format:
            req["response_format"] = dict(response_format)
        if extra_body:
            req["extra_body"] = dict(extra_body)
        return req

    def completion_request(
        self,
        prompt: str | list[int],
        *,
        max_tokens: int | None = None,
        stop: list[str] | None = None,
        logprobs: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        extra_body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A text-completions request (the prompt already chat-templated, as text or token ids)."""
        cfg = self.config
        req: dict[str, Any] = {
            "model": cfg.model,
            "prompt": prompt,
            "temperature": cfg.temperature if temperature is None else float(temperature),
            "max_tokens": int(max_tokens or cfg.max_tokens),
            "seed": int(self.seed),
        }
        top_p = cfg.top_p if top_p is None else top_p
        if top_p is not None:
            req["top_p"] = float(top_p)
        if stop:
            req["stop"] = list(stop)
        if logprobs is not None:
            req["logprobs"] = int(logprobs)
        if extra_body:
            req["extra_body"] = dict(extra_body)
        return req

    # -- one request with retries ---------------------------------------------------------
    def _backoff(self, attempt: int) -> float:
        cap = min(self.config.backoff_max_s, self.config.backoff_base_s * (2**attempt))
        return self._jitter.uniform(0.5 * cap, cap)

    async def _attempt(self, oc: Any, req: dict[str, Any]) -> tuple[str | None, str | None, float | None, Any]:
        """One HTTP attempt: (error kind or None, detail, retry_after, parsed body)."""
        import openai

        try:
            async with asyncio.timeout(self.config.timeout_s):
                endpoint = oc.completions if "prompt" in req else oc.chat.completions
                raw = await endpoint.with_raw_response.create(**req)
                body = raw.content  # read eagerly by with_raw_response
        except openai.APIStatusError as exc:
            status = exc.status_code
            retry_after = parse_retry_after(exc.response.headers)
            detail = f"HTTP {status}: {str(exc.message)[:200]}"
            if status == 429:
                return "rate_limit", detail, retry_after, None
            if status >= 500 or status in (408, 409):
                return "server_error", detail, retry_after, None
            if status in (401, 403):
                raise R2BenchError(
                    f"{self.config.base_url} refused the API key (HTTP {status}); check ${self.config.api_key_env}"
                ) from None
            if status == 404:
                raise R2BenchError(
                    f"{self.config.base_url} answered 404 for model {self.config.model!r}: check base_url and model"
                ) from None
            return "client_error", detail, None, None
        except (openai.APITimeoutError, TimeoutError):
            return "timeout", f"no complete answer within {self.config.timeout_s}s", None, None
        except openai.APIConnectionError as exc:
            return "connection", str(exc)[:200], None, None
        try:
            data = json.loads(body)
            choice = data["choices"][0]
            if "prompt" in req:
                if not isinstance(choice.get("text"), str):
                    raise TypeError("the completion has no text")
            elif not isinstance(choice["message"], dict):
                raise TypeError("message is not an object")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return "invalid_json", f"{type(exc).__name__}: {str(exc)[:120]}; body starts {body[:80]!r}", None, None
        return None, None, None, data

    async def _complete(self, oc: Any, sem: asyncio.Semaphore, req: dict[str, Any], key: str) -> CallResult:
        cfg = self.config
        res = CallResult(key=key)
        for attempt in range(cfg.max_retries + 1):
            async with sem:
                res.attempts += 1
                t0 = time.perf_counter()
                kind, detail, retry_after, data = await self._attempt(oc, req)
                res.latency_s = time.perf_counter() - t0
            if data is not None:
                kind, detail = self._read_answer(res, data)
                if kind is None:
                    res.ok, res.error, res.error_detail = True, None, None
                    if self.cache is not None:
                        self.cache.put(key, cfg.model, res.to_cache())
                    return res
            res.error, res.error_detail = kind, detail
            if kind not in RETRYABLE or attempt == cfg.max_retries:
                break
            wait = retry_after if retry_after is not None else self._backoff(attempt)
            if wait > cfg.max_retry_after_s:
                res.error_detail = f"{detail}; server asked to wait {wait:.0f}s (> max_retry_after_s)"
                break
            res.waits.append(wait)
            await asyncio.sleep(wait)
        log.warning("request %s failed after %d attempt(s): %s (%s)", key[:12], res.attempts, res.error, res.error_detail)
        return res

    def _read_answer(self, res: CallResult, data: dict[str, Any]) -> tuple[str | None, str | None]:
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        res.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        res.completion_tokens += int(usage.get("completion_tokens") or 0)
        details = usage.get("completion_tokens_details") or {}
        res.reasoning_tokens += int(details.get("reasoning_tokens") or 0)
        if "message" in choice:
            content = choice["message"].get("content")
            res.answer, res.reasoning = split_reasoning(content if isinstance(content, str) else None, choice["message"])
        else:  # a text completion: the text as generated, nothing split off
            res.answer, res.reasoning = choice.get("text"), None
        res.finish_reason = choice.get("finish_reason")
        res.stop_reason = choice.get("stop_reason")
        res.logprobs = _token_logprobs(choice)
        if self.allow_partial:
            return None, None
        if res.finish_reason == "length":
            return "truncated", "answer cut at max_tokens (finish_reason=length)"
        if not res.answer:
            return "empty", "no answer text" + (" (reasoning only)" if res.reasoning else "")
        return None, None

    def cache_key(self, request: dict[str, Any]) -> str:
        """The response cache's key of ``request`` (within this client's ``cache_scope``)."""
        return request_key(request if self.cache_scope is None else {**request, "cache_scope": self.cache_scope})

    # -- batches -----------------------------------------------------------------------------
    async def arun(self, requests: Sequence[dict[str, Any]], on_done: Callable[[CallResult], None] | None = None) -> list[CallResult]:
        """Answer ``requests`` (cache first, then the server), in order. Async entry point."""
        import openai

        keys = [self.cache_key(r) for r in requests]
        by_key: dict[str, CallResult] = {}
        if self.cache is not None:
            for k, data in self.cache.get_many(keys).items():
                by_key[k] = CallResult.from_cache(k, data)
        todo: dict[str, dict[str, Any]] = {}
        for k, r in zip(keys, requests):
            if k not in by_key and k not in todo:
                todo[k] = r
        if todo:
            for name in ("httpx", "httpx2"):  # one INFO line per request would bury the progress bar
                if logging.getLogger(name).level == logging.NOTSET:
                    logging.getLogger(name).setLevel(logging.WARNING)
            oc = openai.AsyncOpenAI(
                base_url=self.config.base_url,
                api_key=resolve_api_key(self.config),
                max_retries=0,
                timeout=self.config.timeout_s,
            )
            sem = asyncio.Semaphore(max(1, int(self.config.concurrency)))

            async def one(k: str, r: dict[str, Any]) -> None:
                by_key[k] = res = await self._complete(oc, sem, r, k)
                if on_done:
                    on_done(res)

            try:
                async with asyncio.TaskGroup() as tg:
                    for k, r in todo.items():
                        tg.create_task(one(k, r))
            except* R2BenchError as eg:
                raise eg.exceptions[0] from None
            finally:
                await oc.close()
        out: list[CallResult] = []
        seen: set[str] = set()
        for k in keys:
            res = by_key[k]
            # a request repeated inside the batch was answered once; later copies are free
            out.append(dataclasses.replace(res, cached=True) if k in seen else res)
            seen.add(k)
        self.results.extend(out)
        return out

    def run_batch(self, requests: Sequence[dict[str, Any]], desc: str = "LLM requests",
                  on_progress: Callable[[int], None] | None = None) -> list[CallResult]:
        """Sync facade: answer a batch with a progress bar in requests (works inside a running event loop too).

        Cache hits are counted at once as the bar's starting point, so its rate and ETA are those
        of the requests actually sent. ``on_progress(n)`` replaces the bar (the caller's own bar).
        """
        from r2bench.progress import bar

        hits = len(self.cache.get_many([self.cache_key(r) for r in requests])) if self.cache is not None else 0
        own = on_progress is None
        with bar(total=len(requests), desc=desc, unit="req", initial=hits, disable=not own) as b:
            counted, failed = hits, 0
            if not own:
                on_progress(hits)

            def advance(n: int) -> None:
                nonlocal counted
                counted += n
                (b.update if own else on_progress)(n)

            def done(res: CallResult) -> None:
                nonlocal failed
                failed += not res.ok
                advance(1)
                if failed and own:
                    b.set_postfix(failed=failed)

            out = _run_sync(lambda: self.arun(requests, on_done=done))
            advance(len(requests) - counted)  # repeated requests inside the batch
            return out

    def usage(self) -> dict[str, Any]:
        """Totals over every request this client answered (for ``run.json``)."""
        return summarize(self.results, self.config.price_input_per_1m, self.config.price_output_per_1m)

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()


def _run_sync(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # e.g. called from a notebook
        return pool.submit(lambda: asyncio.run(make())).result()
