"""The CPU check that runs before vLLM starts: it caps oneDNN's ISA on an illegal instruction, or says why it cannot.

A stand-in interpreter plays the CPU: it dies of SIGILL unless ONEDNN_MAX_CPU_ISA is one it
"can run", the way a process dies on a virtual machine that advertises AMX/AVX-512 it refuses.
"""

from __future__ import annotations

import json
import stat
import sys

import pytest

from r2bench.errors import R2BenchError
from r2bench.llm import vllm_server as V

SEEN = {"avx512": True, "avx512_bf16": False, "amx_tile": False, "kernels": "_C_AVX512"}


def _fake_python(tmp_path, runs_under: set[str] | None, crash: str = "ILL"):
    """A script that prints the probe's JSON when ONEDNN_MAX_CPU_ISA is in ``runs_under`` (None: always)."""
    ok = "true" if runs_under is None else " || ".join([f'[ "$ONEDNN_MAX_CPU_ISA" = "{c}" ]' for c in runs_under]
                                                           or ["false"])
    script = tmp_path / "python"
    script.write_text(f"#!/bin/bash\nif {ok}; then echo '{json.dumps(SEEN)}'; exit 0; fi\n"
                      f"echo 'Illegal instruction in oneDNN' >&2\n"
                      f"exec {sys.executable} -c 'import os, signal; os.kill(os.getpid(), signal.SIG{crash})'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_a_cpu_that_runs_everything_needs_no_cap(tmp_path, monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    check = V.cpu_check(_fake_python(tmp_path, None))
    assert check.isa_cap is None and check.seen_by_torch == SEEN and not check.attempts
    assert "vLLM kernels _C_AVX512" in check.describe()


def test_an_illegal_instruction_caps_onednn_and_records_why(tmp_path, monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    check = V.cpu_check(_fake_python(tmp_path, {"AVX2"}))
    assert check.isa_cap == "AVX2"
    assert [a.split(":")[0] for a in check.attempts] == ["no cap", "ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16"]
    assert all("killed by signal SIGILL (4)" in a for a in check.attempts)
    assert V.server_env(2, check.isa_cap)["ONEDNN_MAX_CPU_ISA"] == "AVX2"


def test_a_cpu_nothing_runs_on_fails_naming_the_flags(tmp_path, monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu sse2 avx2 avx512f amx_tile amx_bf16\n")
    real = V.advertised_flags
    monkeypatch.setattr(V, "advertised_flags", lambda path=str(cpuinfo): real(path))
    with pytest.raises(R2BenchError) as err:
        V.cpu_check(_fake_python(tmp_path, set(), crash="SEGV"))
    msg = str(err.value)
    assert "avx2 avx512f amx_tile amx_bf16" in msg and "killed by signal SIGSEGV (11)" in msg
    assert msg.count("ONEDNN_MAX_CPU_ISA=") == len(V.ISA_CAPS) and "virtual machine refuses" in msg


def test_an_ordinary_error_is_not_retried_with_caps(tmp_path):
    script = tmp_path / "python"
    script.write_text("#!/bin/bash\necho 'ModuleNotFoundError: No module named vllm' >&2\nexit 1\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(R2BenchError) as err:
        V.cpu_check(script)
    msg = str(err.value)
    assert "no cap: exited with status 1" in msg and "No module named vllm" in msg
    assert "ONEDNN_MAX_CPU_ISA=AVX" not in msg  # a broken install is not an ISA problem: no capped retries


def test_advertised_flags_reads_the_first_flags_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu avx2 fma avx512f avx512_bf16\nflags : amx_tile\n")
    assert V.advertised_flags(str(cpuinfo)) == ["avx2", "avx512f", "avx512_bf16"]
    assert V.advertised_flags(str(tmp_path / "missing")) == []


def test_a_missing_engine_names_the_install_script(tmp_path, monkeypatch):
    monkeypatch.setenv("R2BENCH_VLLM_PYTHON", str(tmp_path / "nope" / "python"))
    with pytest.raises(R2BenchError, match="scripts/install_vllm_cpu.sh"):
        V.vllm_python()
    assert not V.vllm_available()


def test_the_command_line_carries_the_settings_the_cpu_needs(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    cmd = V.server_command("py", tmp_path, "127.0.0.1", 9, dtype="float32")
    assert "--no-enable-chunked-prefill" in cmd and "--enable-prefix-caching" in cmd and "--enable-lora" in cmd
    assert cmd[:3] == ["py", "-m", "vllm.entrypoints.openai.api_server"]
    env = V.server_env(3, base={"PYTHONPATH": "/somewhere", "HOME": "/root"})
    assert "PYTHONPATH" not in env and env["VLLM_CPU_KVCACHE_SPACE"] == "3" and env["HOME"] == "/root"
    assert env["VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS"] == "3600"  # a stalled step on a loaded box is not a dead one
    assert V.server_env(3, base={"VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS": "60"})["VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS"] == "60"
    with pytest.raises(R2BenchError, match="not a Hugging Face model folder"):
        V.VLLMServer(tmp_path / "absent", python="py")


def test_the_death_message_names_the_likely_cause(tmp_path):
    import subprocess

    (tmp_path / "config.json").write_text("{}")
    srv = V.VLLMServer(tmp_path, python="py", log_path=tmp_path / "server.log", check_cpu=False, kv_cache_gib=3)
    (tmp_path / "server.log").write_text(
        "(EngineCore pid=1) ERROR [multiproc_executor.py:315] Worker proc VllmWorker-0 died unexpectedly "
        "(exit code: None), shutting down executor.\nRuntimeError: Executor failed.\n")
    srv.proc = subprocess.Popen(["true"])
    srv.proc.wait()
    msg = srv.death_message()
    assert "the vLLM server at" in msg and "exited with status 0" in msg and "Executor failed" in msg
    assert "out-of-memory killer" in msg and "3 GiB of KV cache" in msg and "chunked" not in msg
    (tmp_path / "server.log").write_text("RuntimeError: CPU Generator does not use offset\n")
    assert "--no-enable-chunked-prefill" in srv.death_message()


def test_an_exported_r2rank_folder_is_served_without_its_head(tmp_path):
    """vLLM loads every *.safetensors of a folder: the scoring head beside the weights must not be among them."""
    import torch
    from safetensors.torch import save_file

    from r2bench.r2rank.head import ScoringHead

    folder = tmp_path / "final"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    save_file({"model.embed_tokens.weight": torch.zeros(2, 2)}, str(folder / "model.safetensors"))
    ScoringHead(8, 4).save(folder / "head.safetensors")
    view, tmp = V.weights_view(folder)
    assert tmp == view and view != folder
    assert sorted(p.name for p in view.iterdir()) == ["config.json", "model.safetensors"]
    assert (view / "model.safetensors").resolve() == (folder / "model.safetensors").resolve()
    server = V.VLLMServer(folder, python="py", check_cpu=False)
    assert str(server.weights) in server.cmd and str(folder) not in server.cmd
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text("{}")
    save_file({"w": torch.zeros(1)}, str(plain / "model.safetensors"))
    assert V.weights_view(plain) == (plain, None)
