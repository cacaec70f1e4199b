"""Each LLM method end to end against a real llama.cpp server serving SmolLM2-135M-Instruct.

Skipped (with the reason) where ``llama-cpp-python[server]`` or the packaged model
is missing; CI installs both so these run there. Few instances, small max_tokens:
SmolLM2 decodes ~20 tokens/s on a 2-core box.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.server_fixtures import need_engine

pytestmark = pytest.mark.server

need_engine("llama.cpp")  # skipped where llama.cpp is missing; failed under R2BENCH_REQUIRE_SERVERS=1

pytest.importorskip("openai")


# `llama_server` is tests/server_fixtures.py's: guarded, so a crash fails the test at once with its signal.


@pytest.fixture(scope="module")
def small_bench(tmp_path_factory):
    """5 candidates and 3 history items: short prompts, so the real model answers in seconds."""
    from r2bench.data.synthetic import make_synthetic_benchmark

    return make_synthetic_benchmark(tmp_path_factory.mktemp("small_bench"), n_users=30, n_items=40, seed=1,
                                    max_len=8, n_candidates=5, history_len=3)


def _run(method, bench_path, srv, tmp_path, limit, **overrides):
    from r2bench.pipeline import run_method
    from r2bench.runs import load_run

    ov = {"base_url": srv.base_url, "model": srv.alias, "cache_path": str(tmp_path / "cache.sqlite"),
          "timeout_s": 600, "max_retries": 1, "concurrency": 2}
    ov.update(overrides)
    return load_run(run_method(method, bench_path, split="test", limit=limit, seed=0, overrides=ov, out=tmp_path / "runs"))


def test_models_endpoint_names_the_alias(llama_server):
    import json
    import urllib.request

    with urllib.request.urlopen(f"{llama_server.base_url}/models", timeout=10) as r:
        ids = [m["id"] for m in json.load(r)["data"]]
    assert "smollm2" in ids


def test_listwise_against_llama_cpp(llama_server, small_bench, tmp_path):
    run = _run("llm-listwise", small_bench, llama_server, tmp_path, limit=1, max_tokens=32)
    llm, parse = run.info["llm"], run.info["parse"]
    assert llm["sent"] == 1 and llm["prompt_tokens"] > 100 and llm["completion_tokens"] > 0
    assert sum(parse["counts"].values()) == 1
    assert abs(parse["valid"] + parse["partial"] + parse["unusable"] - 1.0) < 1e-9
    resp = run.table("responses")
    assert resp.height == 1 and set(resp["finish_reason"]) <= {"stop", "length"}
    assert resp["answer"].null_count() == 0
    assert run.has_metrics() and 0.0 <= run.metrics["ndcg@10"].mean() <= 1.0
    # a re-run is answered by the cache: same answers, nothing sent
    again = _run("llm-listwise", small_bench, llama_server, tmp_path, limit=1, max_tokens=32)
    cached_ok = int(resp["ok"].sum())
    assert again.info["llm"]["cache_hits"] == cached_ok
    assert again.info["llm"]["sent"] == 1 - cached_ok


def test_pointwise_uses_server_logprobs(llama_server, small_bench, tmp_path):
    run = _run("llm-pointwise", small_bench, llama_server, tmp_path, limit=1, max_tokens=3)
    counts = run.info["parse"]["counts"]
    assert sum(counts.values()) == 5
    assert counts.get("logprob", 0) >= 3  # llama.cpp returns top_logprobs; Yes/No are among them
    scores = run.scores["score"].to_numpy()
    assert np.isfinite(scores).all() and np.unique(scores).size > 1
    resp = run.table("responses")
    lp = resp.filter(resp["parse"] == "logprob")
    assert (lp["score"].abs() > 0).any()


def test_reflective_against_llama_cpp(llama_server, small_bench, tmp_path):
    run = _run("llm-reflective", small_bench, llama_server, tmp_path, limit=1, max_tokens=12, no_cot=True)
    resp = run.table("responses")
    assert resp.height == 5 and resp["item_id"].null_count() == 0
    assert set(resp["parse"]) <= {"logprob", "answer", "none"}
    llm = run.info["llm"]
    assert llm["calls"] == 5 and llm["ok"] + llm["failed"] == 5
    # truncated answers are recorded as failures and never cached
    assert llm["failures"].get("truncated", 0) == int((resp["finish_reason"] == "length").sum())


def test_serve_local_command_starts_and_stops_the_server():
    import json
    import re
    import signal
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "r2bench", "serve-local", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base_url = None
        for line in proc.stdout:
            m = re.search(r"at (http://127\.0\.0\.1:\d+/v1)", line)
            if m:
                base_url = m.group(1)
                break
        assert base_url, "serve-local never reported its address"
        with urllib.request.urlopen(f"{base_url}/models", timeout=10) as r:
            assert json.load(r)["data"][0]["id"] == "smollm2"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(f"{base_url}/models", timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_serve_local_reports_a_crashed_server_with_its_signal():
    import re
    import signal
    import subprocess
    import sys

    import psutil

    proc = subprocess.Popen([sys.executable, "-m", "r2bench", "serve-local", "--port", "0", "--n-threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if re.search(r"at http://127\.0\.0\.1:\d+/v1", line):
                break
        children = psutil.Process(proc.pid).children()
        assert len(children) == 1 and "llama_cpp.server" in " ".join(children[0].cmdline())
        children[0].send_signal(signal.SIGSEGV)  # what a build for another CPU does on its first request
        assert proc.wait(timeout=60) == 1
        err = proc.stderr.read()
        assert "killed by signal SIGSEGV (11)" in err and "last lines of its log" in err, err
        assert "scripts/install_llama_cpp.sh" in err, err
    finally:
        if proc.poll() is None:
            proc.kill()


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def test_server_memory_does_not_grow_per_request(llama_server):
    """The default server keeps no per-request state: llama-cpp-python's RAM prompt cache
    (``--cache True``) keeps a copy of the logits per distinct prompt (+360 MiB per request at
    300 words, bench/llama_server_memory.py), which got a 95-request listwise run killed by the
    kernel at 19 GB."""
    from openai import OpenAI

    assert "--cache" not in llama_server.cmd
    client = OpenAI(base_url=llama_server.base_url, api_key="none")
    rss = []
    for i in range(6):  # with the RAM cache: +53.6 MiB per request at 40 words (the bench with --words 40)
        text = " ".join(f"item{i}-{j}" for j in range(40))  # distinct prompts: nothing shared to reuse
        client.chat.completions.create(model=llama_server.alias, messages=[{"role": "user", "content": text}],
                                       max_tokens=1)
        rss.append(_rss_mib(llama_server.proc.pid))
    assert rss[-1] - rss[0] < 100, f"server RSS grew {rss[-1] - rss[0]:.0f} MiB over 5 requests: {rss}"
