"""A deliberately misbehaving OpenAI-compatible server for the client's fault tests.

Stdlib only, bound to 127.0.0.1 on a free port. The last user message chooses the
behaviour with a marker ``FAULT=<kind>``; a fault happens on the first
``times`` requests for that prompt (``FAULT=<kind>*<times>``, default 1), after
which the prompt is answered normally. Kinds: ``429`` (with Retry-After), ``500``,
``hang`` (sleeps longer than the client's timeout), ``badjson``, ``nochoices``,
``empty``, ``length`` (a truncated answer), ``think`` (always: reasoning in
``reasoning_content`` and inline ``<think>``), ``401``.

Global switch ``hang_after``: once that many prompts have been answered
successfully, every new request hangs (used to kill a client mid-run).
Counters per prompt: ``received`` and ``succeeded`` (complete answers sent).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MARK = re.compile(r"FAULT=(\w+)(?:\*(\d+))?")


class FaultState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: Counter[str] = Counter()
        self.succeeded: Counter[str] = Counter()
        self.hang_after: int | None = None
        self.hang_s = 5.0
        self.retry_after = "1"
        self.delay_s = 0.0
        self.auth_seen: list[str] = []
        #: optional body -> {"content": str, "logprobs": [...] (OpenAI "content" list)} for normal answers
        self.responder = None


def _prompt(body: dict) -> str:
    msgs = body.get("messages") or []
    return str(msgs[-1].get("content", "")) if msgs else ""


class Handler(BaseHTTPRequestHandler):
    server_version = "FaultServer/1"
    state: FaultState

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, json.dumps({"object": "list", "data": [{"id": "fault", "object": "model"}]}).encode())
        else:
            self._send(404, b'{"error": {"message": "not found"}}')

    def do_POST(self) -> None:
        st = self.state
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        prompt = _prompt(body)
        st.auth_seen.append(self.headers.get("Authorization", ""))
        with st.lock:
            st.received[prompt] += 1
            n = st.received[prompt]
            hang_all = st.hang_after is not None and sum(st.succeeded.values()) >= st.hang_after
        if hang_all:
            time.sleep(st.hang_s)
            return self._send(503, b'{"error": {"message": "late"}}')
        if st.delay_s:
            time.sleep(st.delay_s)
        m = MARK.search(prompt)
        kind, times = (m.group(1), int(m.group(2) or 1)) if m else (None, 0)
        if kind in ("length", "think", "401"):
            times = 10**9
        if kind and n <= times:
            if kind == "429":
                return self._send(429, b'{"error": {"message": "slow down"}}', {"Retry-After": st.retry_after})
            if kind == "500":
                return self._send(500, b'{"error": {"message": "boom"}}')
            if kind == "401":
                return self._send(401, b'{"error": {"message": "bad key"}}')
            if kind == "hang":
                time.sleep(st.hang_s)
                return self._send(200, b"{}")
            if kind == "badjson":
                return self._send(200, b'{"choices": [ {"message": ')
            if kind == "nochoices":
                return self._send(200, b'{"object": "chat.completion"}')
            if kind == "empty":
                return self._send(200, json.dumps(_completion(body, "", "stop")).encode())
            if kind == "length":
                return self._send(200, json.dumps(_completion(body, "[3] > [1] > [", "length")).encode())
            if kind == "think":
                payload = _completion(body, "<think>inline thoughts</think>The answer: yes", "stop")
                payload["choices"][0]["message"]["reasoning_content"] = "field thoughts"
                payload["usage"]["completion_tokens_details"] = {"reasoning_tokens": 7}
                with st.lock:
                    st.succeeded[prompt] += 1
                return self._send(200, json.dumps(payload).encode())
        if st.responder is not None:
            out = st.responder(body)
            payload = _completion(body, out["content"], out.get("finish_reason", "stop"))
            if "logprobs" in out:
                payload["choices"][0]["logprobs"] = {"content": out["logprobs"]} if out["logprobs"] else None
            self._send(200, json.dumps(payload).encode())
        else:
            self._send(200, json.dumps(_completion(body, f"echo: {prompt[-60:]}", "stop")).encode())
        with st.lock:
            st.succeeded[prompt] += 1


def _completion(body: dict, content: str, finish: str) -> dict:
    choice: dict = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}
    if body.get("logprobs"):
        choice["logprobs"] = {"content": [
            {"token": "Yes", "logprob": -0.2, "top_logprobs": [{"token": "Yes", "logprob": -0.2}, {"token": "No", "logprob": -1.7}]}
        ]}
    return {
        "id": "chatcmpl-fault", "object": "chat.completion", "created": int(time.time()), "model": body.get("model", "fault"),
        "choices": [choice],
        "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
    }


class FaultServer:
    """``with FaultServer() as fs: fs.base_url ...``; counters in ``fs.state``."""

    def __init__(self) -> None:
        self.state = FaultState()
        handler = type("BoundHandler", (Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FaultServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
