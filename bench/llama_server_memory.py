"""Benchmark: the local llama.cpp server's memory per request, with and without its RAM prompt cache.

llama-cpp-python's ``--cache True`` (``LlamaRAMCache``, 2 GiB by default) saves a state after
every completion and bounds itself by the size of the KV state only; each saved state also
holds a copy of the logits buffer, which is far larger for a small model with a big
vocabulary. A listwise run on ML-100K (95 prompts of ~1,400 tokens) grew the server to 19 GB
and the kernel killed it after 59 requests. Without the RAM cache the server still reuses
the KV cache of the prefix it shares with the previous request (llama.cpp's prefix match),
which is what consecutive pointwise requests of one instance need.

    python bench/llama_server_memory.py [--requests 6] [--words 400]

Prints the server's RSS after each request of distinct prompts, for both settings, and the
growth per request.
"""

from __future__ import annotations

import argparse
import time


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(prompt_cache: bool, n: int, words: int, threads: int) -> list[float]:
    from openai import OpenAI

    from r2bench.llm.local_server import LocalServer

    out = []
    with LocalServer(n_threads=threads, prompt_cache=prompt_cache) as srv:
        client = OpenAI(base_url=srv.base_url, api_key="none")
        out.append(rss_mib(srv.proc.pid))
        for i in range(n):
            text = " ".join(f"item{i}-{j}" for j in range(words))  # distinct prompts: no shared prefix
            client.chat.completions.create(model=srv.alias, messages=[{"role": "user", "content": text}], max_tokens=1)
            out.append(rss_mib(srv.proc.pid))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=6)
    ap.add_argument("--words", type=int, default=400, help="words per prompt (about 3 tokens each)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    rows = {}
    for cache in (True, False):
        t0 = time.perf_counter()
        rows[cache] = measure(cache, args.requests, args.words, args.threads)
        print(f"prompt_cache={cache!s:5}  RSS MiB after load and each request: "
              f"{', '.join(f'{v:.0f}' for v in rows[cache])}  ({time.perf_counter() - t0:.0f} s)")
    for cache, r in rows.items():
        per = (r[-1] - r[1]) / max(1, len(r) - 2)
        print(f"prompt_cache={cache!s:5}  growth per request after the first: {per:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
