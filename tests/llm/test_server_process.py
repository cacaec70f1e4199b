"""The engine-neutral server process: a server never outlives the process that started it.

A stand-in server (a few lines of http.server answering ``/v1/models``) is started by a
parent process through :class:`r2bench.llm.local_server.ServerProcess`; the parent is then
killed with SIGKILL, as a test runner stopped by a timeout is. The server, which runs in a
session of its own, must be gone within seconds (PR_SET_PDEATHSIG), instead of holding its
memory until someone notices.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

FAKE_SERVER = r'''
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"data": [{"id": "fake"}]}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
'''

PARENT = r'''
import sys, time
from r2bench.llm.local_server import ServerProcess, free_port
port = free_port()
srv = ServerProcess([sys.executable, sys.argv[1], str(port)], "127.0.0.1", port, "fake", None, None, "t-")
srv.start(wait_s=60)
print(srv.proc.pid, flush=True)
time.sleep(600)
'''


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its (dead) parent's reaper counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_killed_parent_takes_its_server_with_it(tmp_path):
    fake = tmp_path / "fake_server.py"
    fake.write_text(FAKE_SERVER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(fake)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        server_pid = int(parent.stdout.readline())
        assert _alive(server_pid)
        assert os.getsid(server_pid) != os.getsid(parent.pid)  # its own session: not killed with the parent's group
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 15
        while _alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(server_pid), "the server outlived the process that started it"
    finally:
        if parent.poll() is None:
            parent.kill()
