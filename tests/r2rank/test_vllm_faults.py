"""The vLLM server dies in the middle of an R2Rank run: the run fails clearly, and a re-run sends only what is missing.

A vLLM server of its own is started for the run and killed (its whole process group, as a
crash or the kernel's OOM killer would) once a few reasonings are in the response cache.
The re-run goes to the session's server (same model, same served name: the cache key is
the request, not the address) and must send exactly the requests that were not answered.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.server

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("openai")

REPO = Path(__file__).resolve().parents[2]
LIMIT = 3  # 3 instances x 5 candidates = 15 reasonings, sent one at a time


def _rows(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _command(bench, base_url, model_dir, cache, out):
    sets = {"generator": "openai", "base_url": base_url, "model": "smollm2", "backbone": str(model_dir),
            "head": "none", "max_reasoning_tokens": 24, "cache_path": str(cache), "concurrency": 1,
            "max_retries": 1, "backoff_base_s": 0.2, "backoff_max_s": 0.5, "timeout_s": 120, "threads": 1,
            "device": "cpu", "server_token_ids": "true"}
    cmd = [sys.executable, "-m", "r2bench", "run", "--method", "r2rank", "--dataset", str(bench), "--split", "test",
           "--limit", str(LIMIT), "--out", str(out)]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    return cmd


def test_killed_server_fails_the_run_and_the_rerun_resumes(vllm_server, smollm2_dir, tmp_path):
    from r2bench.data.synthetic import make_synthetic_benchmark
    from r2bench.llm.vllm_server import VLLMServer
    from r2bench.runs import load_runs

    bench = make_synthetic_benchmark(tmp_path / "bench", n_users=30, n_items=40, seed=1, max_len=8,
                                     n_candidates=5, history_len=3)
    cache = tmp_path / "cache.sqlite"
    env = {**os.environ, "R2BENCH_PROGRESS": "0", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    doomed = VLLMServer(smollm2_dir, kv_cache_gib=1, log_path=tmp_path / "doomed.log").start()
    try:
        proc = subprocess.Popen(_command(bench, doomed.base_url, smollm2_dir, cache, tmp_path / "runs"), env=env,
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 600
        while _rows(cache) < 4 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        assert _rows(cache) >= 4, "the run never got four reasonings from the server"
        os.killpg(doomed.proc.pid, signal.SIGKILL)  # the server and its engine processes, at once
        _, err = proc.communicate(timeout=600)
    finally:
        doomed.stop()
    cached = _rows(cache)
    assert proc.returncode != 0
    assert "reasoning requests to " + doomed.base_url in err and "failed" in err and "re-run to retry" in err, err[-2000:]
    assert "connection" in err.lower(), err[-2000:]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no half-written run
    assert 4 <= cached < 5 * LIMIT

    done = subprocess.run(_command(bench, vllm_server.base_url, smollm2_dir, cache, tmp_path / "runs"), env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = load_runs([tmp_path / "runs"])
    llm = run.meta["info"]["llm"]
    assert llm["cache_hits"] == cached and llm["sent"] == 5 * LIMIT - cached and llm["failed"] == 0
    assert run.scores.height == 5 * LIMIT and _rows(cache) == 5 * LIMIT
