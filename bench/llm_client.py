"""Throughput of the LLM client against a local OpenAI-compatible server, and of a cached re-run.

Starts ``llama_cpp.server`` on the packaged SmolLM2 (or uses ``--base-url``), then
sends ``--n`` short chat requests (distinct prompts, cache off) at concurrency
1, 4 and 16, ``--rounds`` times in alternating order, and prints the median
requests/s and generated tokens/s per level and their ratios to concurrency 1. Then it measures a fully cached re-run: the same requests answered
from the SQLite cache, and a batch of ``--cached-n`` synthetic cache entries
(no server needed), as requests/s and the speed-up over the uncached run.

    python bench/llm_client.py [--n 16] [--max-tokens 16] [--base-url URL]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("R2BENCH_PROGRESS", "0")

from r2bench.llm.cache import ResponseCache, request_key  # noqa: E402
from r2bench.llm.client import LLMClient  # noqa: E402
from r2bench.llm.config import ClientConfig  # noqa: E402

TOPICS = ["jazz", "chess", "volcanoes", "bread", "comets", "rivers", "owls", "glass", "tides", "maps",
          "bees", "silk", "clocks", "deserts", "kites", "salt", "bridges", "coral", "lanterns", "wolves"]


def prompts(n: int, tag: str) -> list[list[dict[str, str]]]:
    # short answers that end on their own (a truncated answer is a failure and is not cached)
    return [[{"role": "user", "content": f"({tag} #{i}) Is {TOPICS[i % len(TOPICS)]} a living thing? Answer Yes or No."}]
            for i in range(n)]


def timed(client: LLMClient, reqs: list[dict]) -> tuple[float, list]:
    t0 = time.perf_counter()
    out = client.run_batch(reqs, desc="bench")
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", default=None)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--n", type=int, default=16, help="requests per concurrency level")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--cached-n", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3, help="rounds over the levels (the median is reported)")
    ap.add_argument("--n-threads", type=int, default=None, help="llama.cpp threads (default: all cores)")
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))  # run the finally below: stop the server
    server = None
    base_url = args.base_url
    if base_url is None:
        from r2bench.llm.local_server import LocalServer

        server = LocalServer(n_threads=args.n_threads).start()
        base_url = server.base_url
    tmp = Path(tempfile.mkdtemp(prefix="r2bench-bench-"))
    try:
        print(f"server {base_url}, model {args.model}, {args.n} requests of max_tokens={args.max_tokens} per level, "
              f"{os.cpu_count()} CPUs")
        # warm-up (model load, first prefill) so it does not count against concurrency 1
        LLMClient(ClientConfig(base_url=base_url, model=args.model, cache=False, max_tokens=4)).run_batch(
            [LLMClient(ClientConfig(base_url=base_url, model=args.model, cache=False)).request(prompts(1, "warm")[0], max_tokens=4)])
        # levels interleaved over rounds, median per level: a shared box's load swings a lot
        rates: dict[int, list[float]] = {1: [], 4: [], 16: []}
        toks: dict[int, list[float]] = {1: [], 4: [], 16: []}
        for rnd in range(args.rounds):
            for conc in (1, 4, 16) if rnd % 2 == 0 else (16, 4, 1):
                cfg = ClientConfig(base_url=base_url, model=args.model, concurrency=conc, cache=False,
                                   max_tokens=args.max_tokens, timeout_s=600)
                client = LLMClient(cfg)
                reqs = [client.request(m, stop=["."]) for m in prompts(args.n, f"r{rnd}c{conc}")]
                secs, out = timed(client, reqs)
                rates[conc].append(args.n / secs)
                toks[conc].append(sum(r.completion_tokens for r in out) / secs)
                print(f"  round {rnd} concurrency {conc:2d}: {args.n / secs:6.2f} req/s ({secs:.1f}s, "
                      f"{sum(not r.ok for r in out)} failed)", flush=True)
        med = {c: statistics.median(v) for c, v in rates.items()}
        for conc in (1, 4, 16):
            print(f"concurrency {conc:2d}: median {med[conc]:6.2f} req/s  {statistics.median(toks[conc]):6.1f} generated tok/s"
                  f"  (x{med[conc] / med[1]:.2f} vs concurrency 1)")

        # cached re-run of real requests: first run fills the cache, the second is served from it
        cfg = ClientConfig(base_url=base_url, model=args.model, concurrency=4, max_tokens=args.max_tokens,
                           cache_path=str(tmp / "cache.sqlite"), timeout_s=600)
        client = LLMClient(cfg)
        reqs = [client.request(m, stop=["."]) for m in prompts(args.n, "cache")]
        first, _ = timed(client, reqs)
        again, out = timed(LLMClient(cfg), reqs)
        assert all(r.cached for r in out if r.ok)
        print(f"cached re-run of {args.n}: {args.n / again:,.0f} req/s vs {args.n / first:.2f} req/s uncached "
              f"(x{first / again:,.0f} faster)")

        # a large fully cached batch (no server involved: every key is in the cache)
        big = ClientConfig(base_url="http://127.0.0.1:9/v1", model="bench", cache_path=str(tmp / "big.sqlite"))
        bc = LLMClient(big)
        breqs = [bc.request(m) for m in prompts(args.cached_n, "big")]
        with ResponseCache(big.cache_path) as cache:
            for r in breqs:
                cache.put(request_key(r), "bench", {"answer": "cached answer", "finish_reason": "stop",
                                                    "prompt_tokens": 30, "completion_tokens": 5})
        secs, out = timed(LLMClient(big), breqs)
        assert all(r.cached for r in out)
        print(f"cached re-run of {args.cached_n:,} requests: {args.cached_n / secs:,.0f} req/s ({secs:.2f}s)")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
