"""What the portable llama.cpp build costs: generation and prompt speed against a native build.

The portable build (scripts/install_llama_cpp.sh: AVX2/FMA/F16C, no AVX-512/AMX) is the one
CI and the README install, because a -march=native build crashes on VMs that advertise
AMX/AVX-512 but refuse them. This bench serves the packaged SmolLM2 from both builds, one
after the other in alternating rounds, with the same requests, and prints tokens/s and
the ratio. Run it on a machine where the native build works.

    R2BENCH_LLAMA_FLAGS=native ... (or:)
    CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF" pip wheel --no-cache-dir --no-deps \\
        --no-binary llama-cpp-python llama-cpp-python==0.3.36 -w /tmp/native-wheel
    pip install --no-deps --target /tmp/llama-native /tmp/native-wheel/*.whl
    python bench/llama_cpp_build.py --native /tmp/llama-native

The portable build is the installed ``llama_cpp``; ``--native`` is a folder holding
another ``llama_cpp`` package, put first on the server's PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT = ("Write a long, detailed story about a travelling film critic who reviews every movie in a small town's "
          "cinema over one summer, describing each film, the audience and the weather. Chapter 1:")


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=900) as r:
        return json.load(r)


def measure(server, args) -> dict[str, float]:
    """Generation tokens/s over ``args.requests`` completions; prompt tokens/s over one long prompt."""
    url = f"{server.base_url}/completions"
    post(url, {"model": server.alias, "prompt": "Hello", "max_tokens": 4})  # warm-up
    gen_tokens, gen_s = 0, 0.0
    for i in range(args.requests):
        t = time.perf_counter()
        out = post(url, {"model": server.alias, "prompt": f"{PROMPT} ({i})", "max_tokens": args.max_tokens,
                         "temperature": 0.0, "seed": i})
        gen_s += time.perf_counter() - t
        gen_tokens += out["usage"]["completion_tokens"]
    long_prompt = " ".join(f"{k}. The Film Number {k} (1997) [drama, comedy]" for k in range(60))
    t = time.perf_counter()
    out = post(url, {"model": server.alias, "prompt": long_prompt + f" {time.time()}", "max_tokens": 1})
    prompt_s = time.perf_counter() - t
    return {"gen_tok_s": gen_tokens / gen_s, "gen_tokens": gen_tokens,
            "prompt_tok_s": out["usage"]["prompt_tokens"] / prompt_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--native", required=True, help="folder holding a natively built llama_cpp package")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    from r2bench.llm.local_server import LocalServer

    builds = {"portable": None, "native": {**os.environ, "PYTHONPATH": os.pathsep.join(
        [args.native, os.environ.get("PYTHONPATH", "")])}}
    results: dict[str, list[dict]] = {k: [] for k in builds}
    for r in range(args.rounds):
        for name, env in (builds.items() if r % 2 == 0 else reversed(list(builds.items()))):
            with LocalServer(n_threads=args.threads, env=env, prompt_cache=False) as srv:
                res = measure(srv, args)
            results[name].append(res)
            print(f"round {r + 1} {name:8s} generation {res['gen_tok_s']:6.1f} tok/s ({res['gen_tokens']} tokens), "
                  f"prompt {res['prompt_tok_s']:7.1f} tok/s", flush=True)
    med = {k: {m: statistics.median(x[m] for x in v) for m in ("gen_tok_s", "prompt_tok_s")} for k, v in results.items()}
    print(f"\nmedian of {args.rounds} rounds, {args.threads} thread(s), SmolLM2-135M Q4_1:")
    print("| build | generation tok/s | prompt tok/s |\n|---|---:|---:|")
    for k, v in med.items():
        print(f"| {k} | {v['gen_tok_s']:.1f} | {v['prompt_tok_s']:.1f} |")
    print(f"portable / native: generation {med['portable']['gen_tok_s'] / med['native']['gen_tok_s']:.2f}x, "
          f"prompt {med['portable']['prompt_tok_s'] / med['native']['prompt_tok_s']:.2f}x")


if __name__ == "__main__":
    main()
