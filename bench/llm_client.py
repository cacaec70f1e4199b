"""Throughput of the LLM client against a local OpenAI-compatible server, and of a cached re-run.

Starts a server on the packaged SmolLM2 (``--engine llama.cpp``: ``llama_cpp.server`` on the
GGUF; ``--engine vllm``: vLLM on the converted folder, as ``r2bench serve-local --engine
vllm`` does) or uses ``--base-url``, then sends ``--n`` chat requests (distinct prompts,
cache off) at concurrency 1, 4 and 16, ``--rounds`` times in alternating order, and
prints the median requests/s and generated tokens/s per level and their ratios to
concurrency 1.

Each level is measured two ways in the same round, on the same request bodies: through
r2bench's client (``LLMClient.run_batch``: cache lookup, retries, accounting, progress) and
through a bare ``openai.AsyncOpenAI`` with a semaphore (the server's own throughput, what
any client could get). With vLLM the server's own counter of generated tokens
(``vllm:generation_tokens_total`` on ``/metrics``) is read around each batch as a third
figure. Then it measures a fully cached re-run: the same requests answered from the
SQLite cache, and a batch of ``--cached-n`` synthetic cache entries (no server needed),
as requests/s and the speed-up over the uncached run.

    python bench/llm_client.py [--engine llama.cpp|vllm] [--n 16] [--max-tokens 16] [--base-url URL]
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


def timed_raw(base_url: str, reqs: list[dict], concurrency: int) -> tuple[float, int]:
    """The same request bodies through a bare AsyncOpenAI client: (seconds, generated tokens)."""
    import asyncio

    import openai

    async def go() -> int:
        oc = openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=600)
        sem = asyncio.Semaphore(concurrency)

        async def one(req: dict) -> int:
            async with sem:
                r = await oc.chat.completions.create(**req)
                return r.usage.completion_tokens

        try:
            return sum(await asyncio.gather(*[one(r) for r in reqs]))
        finally:
            await oc.close()

    t0 = time.perf_counter()
    toks = asyncio.run(go())
    return time.perf_counter() - t0, toks


def server_generated_tokens(base_url: str) -> float | None:
    """vLLM's own count of generated tokens (Prometheus ``/metrics``); None for servers without it."""
    import urllib.request

    try:
        with urllib.request.urlopen(base_url.rsplit("/v1", 1)[0] + "/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return None
    vals = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("vllm:generation_tokens_total")]
    return sum(vals) if vals else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", default=None)
    ap.add_argument("--engine", choices=("llama.cpp", "vllm"), default="llama.cpp",
                    help="server started when no --base-url is given")
    ap.add_argument("--dtype", default="float32", help="vllm: the served weights' dtype")
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
    if base_url is None and args.engine == "vllm":
        from r2bench.llm.vllm_server import VLLMServer
        from r2bench.lm.backbones import resolve_backbone

        server = VLLMServer(resolve_backbone("smollm2-135m"), dtype=args.dtype).start()
        base_url = server.base_url
        print(server.cpu.describe())
    elif base_url is None:
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
        levels = (1, 4, 16)
        rates: dict[str, dict[int, list[float]]] = {k: {c: [] for c in levels} for k in ("client", "raw")}
        toks: dict[str, dict[int, list[float]]] = {k: {c: [] for c in levels} for k in ("client", "raw", "server")}
        for rnd in range(args.rounds):
            for conc in levels if rnd % 2 == 0 else levels[::-1]:
                cfg = ClientConfig(base_url=base_url, model=args.model, concurrency=conc, cache=False,
                                   max_tokens=args.max_tokens, timeout_s=600)
                client = LLMClient(cfg)
                for how in ("client", "raw") if rnd % 2 == 0 else ("raw", "client"):
                    reqs = [client.request(m, stop=["."]) for m in prompts(args.n, f"r{rnd}c{conc}{how}")]
                    before = server_generated_tokens(base_url)
                    if how == "client":
                        secs, out = timed(client, reqs)
                        gen, failed = sum(r.completion_tokens for r in out), sum(not r.ok for r in out)
                    else:
                        secs, gen = timed_raw(base_url, reqs, conc)
                        failed = 0
                    after = server_generated_tokens(base_url)
                    rates[how][conc].append(args.n / secs)
                    toks[how][conc].append(gen / secs)
                    if before is not None and after is not None and how == "raw":
                        toks["server"][conc].append((after - before) / secs)
                    print(f"  round {rnd} concurrency {conc:2d} {how:6s}: {args.n / secs:6.2f} req/s "
                          f"{gen / secs:6.1f} tok/s ({secs:.1f}s, {failed} failed)", flush=True)
        med = {how: {c: statistics.median(v) for c, v in r.items()} for how, r in rates.items()}
        print("\n| concurrency | r2bench client req/s | bare client req/s | client / bare | r2bench client tok/s | "
              "bare client tok/s | server-counted tok/s |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for conc in levels:
            srv = statistics.median(toks["server"][conc]) if toks["server"][conc] else float("nan")
            print(f"| {conc} | {med['client'][conc]:.2f} | {med['raw'][conc]:.2f} | "
                  f"{med['client'][conc] / med['raw'][conc]:.2f} | {statistics.median(toks['client'][conc]):.1f} | "
                  f"{statistics.median(toks['raw'][conc]):.1f} | {srv:.1f} |")
        for conc in levels:
            print(f"concurrency {conc:2d}: r2bench client x{med['client'][conc] / med['client'][1]:.2f} vs concurrency 1")

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
