"""A server that dies explains itself: the failing test names the signal and the server's log.

The guarded fixture (tests/server_fixtures.py) is exercised the way a user meets it: an
inner pytest session runs a test whose request is in flight when the server is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server_fixtures import need_engine

pytestmark = pytest.mark.server

need_engine("llama.cpp")  # skipped where llama.cpp is missing; failed under R2BENCH_REQUIRE_SERVERS=1


REPO = Path(__file__).resolve().parents[2]

INNER = '''
import json, os, signal, threading, urllib.request

def test_request_in_flight_when_the_server_dies(llama_server):
    # kill the server once the request is on its way; the completion alone would take minutes
    threading.Timer(2.0, os.kill, (llama_server.proc.pid, signal.{sig})).start()
    body = json.dumps({{"model": "smollm2", "prompt": "Count slowly from one to a thousand:", "max_tokens": 3000,
                       "temperature": 0}}).encode()
    req = urllib.request.Request(llama_server.base_url + "/completions", data=body,
                                 headers={{"Content-Type": "application/json"}})
    urllib.request.urlopen(req, timeout=900).read()

def test_next_test_fails_before_it_starts(llama_server):
    raise AssertionError("must not run: the server is already dead")
'''


def test_killed_server_fails_the_test_naming_the_signal(tmp_path):
    sig = "SIGSEGV"  # a crash; any other signal is named the same way (describe_exit)
    (tmp_path / "conftest.py").write_text("from tests.server_fixtures import _llama_server_alive, llama_server, pytest_runtest_call  # noqa\n")
    (tmp_path / "test_inner.py").write_text(INNER.format(sig=sig))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                           str(tmp_path)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    number = int(getattr(signal, sig))
    assert f"killed by signal {sig} ({number})" in out, out
    assert "ServerDiedDuringTest" in out and "last lines of its log" in out, out
    assert "before the test" in out and "must not run" not in out, out  # the next test fails at once
    assert "Connection" not in out.split("short test summary")[-1], out  # not a retry/connection error
    assert "scripts/install_llama_cpp.sh" in out, out  # the likely cause of a SIGSEGV is named


def test_describe_exit_names_signals_and_statuses():
    from r2bench.llm.local_server import describe_exit

    assert describe_exit(-9) == "killed by signal SIGKILL (9)"
    assert describe_exit(-4) == "killed by signal SIGILL (4)"
    assert describe_exit(3) == "exited with status 3"
