"""The LLM baselines end to end against a real vLLM server (the CPU build) serving SmolLM2-135M-Instruct.

The server is tests/server_fixtures.py's session-scoped ``vllm_server`` (guarded: a crash
fails the test at once with its signal and log). Where vLLM is not installed these tests
are skipped with the reason; CI sets R2BENCH_REQUIRE_SERVERS=1, which turns that skip into
a failure.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import urllib.request

import numpy as np
import pytest

pytestmark = pytest.mark.server

pytest.importorskip("openai")


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
          "timeout_s": 600, "max_retries": 1, "concurrency": 4}
    ov.update(overrides)
    return load_run(run_method(method, bench_path, split="test", limit=limit, seed=0, overrides=ov, out=tmp_path / "runs"))


def test_server_runs_with_the_settings_r2bench_needs(vllm_server):
    with urllib.request.urlopen(f"{vllm_server.base_url}/models", timeout=10) as r:
        assert [m["id"] for m in json.load(r)["data"]][0] == "smollm2"  # then any LoRA adapters loaded
    cmd = " ".join(vllm_server.cmd)
    for flag in ("--enable-prefix-caching", "--no-enable-chunked-prefill", "--enable-lora", "--dtype float32"):
        assert flag in cmd
    assert vllm_server.env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert vllm_server.cpu is not None and vllm_server.cpu.seen_by_torch["kernels"] in ("_C", "_C_AVX512", "_C_AVX2")


def test_seeded_concurrent_long_prompts_keep_the_engine_alive(vllm_server):
    """With chunked prefill, seeded requests whose long prompts are prefilled in pieces kill the engine
    (``CPU Generator does not use offset``); r2bench's settings must hold under exactly that load."""
    import openai

    async def go():
        oc = openai.AsyncOpenAI(base_url=vllm_server.base_url, api_key="none", max_retries=0, timeout=900)
        base = " ".join(f"item{i} (19{i % 100:02d})" for i in range(300))  # ~1,500 tokens, shared by all
        try:
            return await asyncio.gather(*[
                oc.completions.create(model="smollm2", prompt=f"{base} candidate {i}:", max_tokens=4,
                                      temperature=1.0, seed=1000 + i) for i in range(16)])
        finally:
            await oc.close()

    out = asyncio.run(go())
    assert len(out) == 16 and all(r.usage.prompt_tokens > 1000 for r in out)
    assert all(r.choices[0].finish_reason in ("stop", "length") for r in out)
    vllm_server.check_alive()


def test_listwise_structured_output_always_parses(vllm_server, small_bench, tmp_path):
    from baselines.llm_prompts import listwise_regex

    free = _run("llm-listwise", small_bench, vllm_server, tmp_path, limit=3, max_tokens=24)
    run = _run("llm-listwise", small_bench, vllm_server, tmp_path, limit=3, max_tokens=64, structured_output="regex")
    resp = run.table("responses")
    assert resp.height == 3 and set(resp["finish_reason"]) == {"stop"}
    for answer in resp["answer"]:
        assert re.fullmatch(listwise_regex(5), answer), answer
    parse = run.info["parse"]
    assert parse["unusable"] == 0.0 and parse["valid"] + parse["partial"] == pytest.approx(1.0)
    assert parse["matched"]["hallucinated"] == 0 and parse["matched"]["by_id"] >= 3 * 4
    # the constraint is part of the request: a cached free answer is never reused for a constrained one
    assert run.info["llm"]["sent"] == 3 and free.info["llm"]["sent"] == 3
    # the same through OpenAI's response_format (a JSON array of exactly K identifiers)
    js = _run("llm-listwise", small_bench, vllm_server, tmp_path, limit=1, max_tokens=64,
              structured_output="json_schema")
    answer = js.table("responses")["answer"][0]
    ids = json.loads(answer)
    assert len(ids) == 5 and set(ids) <= {f"[{i}]" for i in range(1, 6)}
    assert js.info["parse"]["unusable"] == 0.0


def test_pointwise_uses_server_logprobs(vllm_server, small_bench, tmp_path):
    run = _run("llm-pointwise", small_bench, vllm_server, tmp_path, limit=1, max_tokens=3)
    counts = run.info["parse"]["counts"]
    assert sum(counts.values()) == 5
    assert counts.get("logprob", 0) >= 3  # vLLM returns top_logprobs; Yes/No are among them
    scores = run.scores["score"].to_numpy()
    assert np.isfinite(scores).all() and np.unique(scores).size > 1


def test_reflective_against_vllm_and_resumes_from_the_cache(vllm_server, small_bench, tmp_path):
    run = _run("llm-reflective", small_bench, vllm_server, tmp_path, limit=1, max_tokens=12, no_cot=True)
    resp = run.table("responses")
    assert resp.height == 5 and resp["item_id"].null_count() == 0
    assert set(resp["parse"]) <= {"logprob", "answer", "none"}
    llm = run.info["llm"]
    assert llm["calls"] == 5 and llm["ok"] + llm["failed"] == 5
    assert llm["failures"].get("truncated", 0) == int((resp["finish_reason"] == "length").sum())
    # a second run over two instances sends only the instance the first one did not ask about
    again = _run("llm-reflective", small_bench, vllm_server, tmp_path, limit=2, max_tokens=12, no_cot=True)
    cached_ok = int(resp["ok"].sum())
    assert again.info["llm"]["cache_hits"] == cached_ok and again.info["llm"]["sent"] == 10 - cached_ok


def test_serve_local_vllm_starts_reports_and_names_a_crash(smollm2_dir, tmp_path):
    """`r2bench serve-local --engine vllm`: it answers, and when its server dies the command says how."""
    import os

    import psutil

    env = {**os.environ, "R2BENCH_HOME": str(smollm2_dir.parents[1])}  # the session's converted SmolLM2
    proc = subprocess.Popen([sys.executable, "-m", "r2bench", "serve-local", "--engine", "vllm", "--port", "0",
                             "--kv-cache-gib", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        base_url, cpu_line = None, None
        for line in proc.stdout:
            if line.startswith("CPU flags"):
                cpu_line = line
            m = re.search(r"with vLLM as 'smollm2' at (http://127\.0\.0\.1:\d+/v1)", line)
            if m:
                base_url = m.group(1)
                break
        assert base_url, f"serve-local never reported its address: {proc.stderr.read() if proc.poll() is not None else ''}"
        assert cpu_line and "vLLM kernels" in cpu_line
        with urllib.request.urlopen(f"{base_url}/models", timeout=10) as r:
            assert json.load(r)["data"][0]["id"] == "smollm2"
        server = psutil.Process(proc.pid).children()[0]
        assert "vllm.entrypoints.openai.api_server" in " ".join(server.cmdline())
        server.send_signal(signal.SIGSEGV)
        assert proc.wait(timeout=120) == 1
        err = proc.stderr.read()
        assert "the vLLM server at" in err and "killed by signal SIGSEGV (11)" in err and "last lines of its log" in err, err
        assert "ONEDNN_MAX_CPU_ISA" in err, err  # the likely cause of a SIGSEGV on these CPUs is named
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
