"""A client killed mid-run resumes from the cache: no prompt is answered twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("openai")
sys.path.insert(0, str(Path(__file__).parent))

from llm_fault_server import FaultServer  # noqa: E402

SCRIPT = """
import json, sys
from r2bench.llm.client import LLMClient
from r2bench.llm.config import ClientConfig
base_url, cache_path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = ClientConfig(base_url=base_url, model="fault", concurrency=2, timeout_s=60, max_retries=0,
                   max_tokens=8, cache_path=cache_path)
client = LLMClient(cfg)
out = client.run_batch([client.request([{"role": "user", "content": f"prompt {i}"}]) for i in range(n)])
print(json.dumps({"usage": client.usage(), "ok": sum(r.ok for r in out)}))
"""

N = 12
FIRST = 5


def _rows(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_killed_run_resumes_without_duplicate_requests(tmp_path):
    script = tmp_path / "client_run.py"
    script.write_text(SCRIPT)
    cache = tmp_path / "cache.sqlite"
    env = {**os.environ, "R2BENCH_PROGRESS": "0"}
    with FaultServer() as fs:
        fs.state.hang_after, fs.state.hang_s = FIRST, 20.0
        proc = subprocess.Popen([sys.executable, str(script), fs.base_url, str(cache), str(N)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                answered = sum(fs.state.succeeded.values())
                hanging = sum(fs.state.received.values()) - answered
                # stable state: every answer sent is in the cache and the client waits on a hung request
                if answered >= FIRST and hanging >= 1 and _rows(cache) == answered:
                    break
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.05)
            else:
                pytest.fail("the client never reached the hung requests")
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
        answered_first = sum(fs.state.succeeded.values())
        assert 0 < answered_first < N

        fs.state.hang_after = None
        done = subprocess.run([sys.executable, str(script), fs.base_url, str(cache), str(N)], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["ok"] == N
        assert report["usage"]["cache_hits"] == answered_first
        assert report["usage"]["sent"] == N - answered_first
        # every prompt answered exactly once over both runs; the hung ones were re-sent
        assert len(fs.state.succeeded) == N
        assert set(fs.state.succeeded.values()) == {1}
        assert any(n == 2 for n in fs.state.received.values())
        assert _rows(cache) == N
