"""The local llama.cpp server for tests, guarded so that a crash explains itself.

``llama_server`` (module scope) serves the packaged SmolLM2 on 127.0.0.1. Every test
that uses it is watched: the server must be alive before the test starts, a thread
polls it while the test runs, and it must still be alive afterwards. When it dies,
the test fails *at once* with the exit status or signal and the server's last log
lines, instead of waiting for the client's retries to end in "Connection error".

Loaded by ``tests/conftest.py`` (``pytest_plugins``), so any test module can ask for
``llama_server``; the test file must skip itself where llama-cpp-python is missing.
"""

from __future__ import annotations

import signal
import threading

import pytest

POLL_S = 0.1


class ServerDiedDuringTest(BaseException):
    """Raised in the test's thread when the server dies mid-test.

    A BaseException, so that no ``except Exception`` in the code under test (the
    LLM client's retry loop, say) can swallow it; pytest reports it as the failure.
    """


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    from r2bench.llm.local_server import LocalServer

    log = tmp_path_factory.mktemp("llama") / "server.log"
    # one thread: on a shared, oversubscribed box two llama.cpp threads stall each other
    with LocalServer(n_ctx=4096, log_path=log, n_threads=1) as srv:
        yield srv


class _Watch:
    """Poll the server from a thread; on its death during the test body, interrupt the main thread."""

    def __init__(self, server):
        self.server = server
        self.armed = False  # only the test body is interrupted, never pytest's own reporting
        self.fired = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="llama-server-watch", daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(POLL_S):
            if self.server.exit_status() is not None:
                if self.armed:
                    signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
                return

    def _raise(self, signum, frame):
        if self.armed:
            self.armed, self.fired = False, True
            raise ServerDiedDuringTest(self.server.death_message())

    def __enter__(self):
        self._previous = signal.signal(signal.SIGUSR1, self._raise)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        signal.signal(signal.SIGUSR1, self._previous)


def _reaped(server, wait_s: float = 2.0) -> bool:
    """Whether the server is gone, giving a dying process a moment to be reaped."""
    for _ in range(int(wait_s / POLL_S)):
        if server.exit_status() is not None:
            return True
        threading.Event().wait(POLL_S)
    return server.exit_status() is not None


@pytest.fixture(autouse=True)
def _llama_server_alive(request):
    if "llama_server" not in request.fixturenames or threading.current_thread() is not threading.main_thread():
        yield
        return
    server = request.getfixturevalue("llama_server")
    if server.exit_status() is not None:
        pytest.fail(f"before the test: {server.death_message()}", pytrace=False)
    with _Watch(server) as watch:
        request.node._llama_watch = watch
        yield
    if not watch.fired and server.exit_status() is not None:
        pytest.fail(f"after the test: {server.death_message()}", pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Arm the watch for the test body; a failure while the server died is reported as its death."""
    watch = getattr(item, "_llama_watch", None)
    if watch is None:
        yield
        return
    watch.armed = True
    outcome = yield
    watch.armed = False
    exc = outcome.exception
    if exc is not None and not isinstance(exc, ServerDiedDuringTest) and _reaped(watch.server):
        # e.g. the connection error of the request that was in flight when it died
        watch.fired = True
        died = ServerDiedDuringTest(watch.server.death_message())
        died.__cause__ = exc  # pytest shows what the test saw first, then why
        outcome.force_exception(died)
