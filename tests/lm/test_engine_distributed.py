"""Two CPU processes on the accelerate engine (DDP over gloo) take exactly one process's step.

One launch runs every check (``tests/lm/engine_worker.py``: SFT, RL of each variant, TALLRec,
a resumed run, raw FSDP2) in two processes::

    accelerate launch --multi_gpu --num_processes 2 -m tests.lm.engine_worker ...

(on a machine without CUDA the engine runs DDP over gloo on the CPU; accelerate's
``--cpu --num_processes 2`` would start a single process where there is no ``mpirun``), and
one plain process runs the same checks as the reference. Each check's global batch splits
unevenly between the two processes' users (in ``no-cot`` one process has no instance of
its own), so the zero-weight repeats that keep the passes equal are exercised. Everything
runs in float64: parameters after the step must equal the single process's to 1e-6, and be
bitwise identical across the two processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")
pytest.importorskip("peft")

REPO = Path(__file__).resolve().parents[2]
CHECKS = ["sft", "rl-rl-only", "rl-sft+rl", "rl-mlp-only", "rl-no-cot", "tallrec"]
TOL = 1e-6


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1", "R2BENCH_PROGRESS": "0", "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error",
            "CUDA_VISIBLE_DEVICES": ""}  # gloo on the CPU, also on a GPU machine


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], what: str) -> None:
    try:
        res = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=420)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} did not finish within 420 s")
    if res.returncode != 0:
        pytest.fail(f"{what} failed (rc={res.returncode}):\n{(res.stdout + res.stderr)[-4000:]}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from r2bench.data.benchmark import load_benchmark
    from tests.r2rank.test_training import make_tiny_lm, planted_benchmark, prompt_texts

    root = tmp_path_factory.mktemp("engine")
    bench = planted_benchmark(root / "bench", n_users=60)
    model, tok = make_tiny_lm(prompt_texts(load_benchmark(bench)) + ["Yes No"] * 5)
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    args = ["-m", "tests.lm.engine_worker", "--bench", str(bench), "--model", str(root / "model")]
    _run([sys.executable, *args, "--out", str(root / "single")], "the single process")
    _run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
          *args, "--out", str(root / "multi")], "accelerate launch of two processes")
    return root


def _load(root: Path, name: str, rank: int):
    from safetensors.torch import load_file

    return load_file(str(root / f"{name}.rank{rank}.safetensors")), json.loads((root / f"{name}.rank{rank}.json").read_text())


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("check", CHECKS)
def test_two_processes_take_the_single_process_step(runs, check):
    single, facts1 = _load(runs / "single", check, 0)
    r0, facts0 = _load(runs / "multi", check, 0)
    r1, _ = _load(runs / "multi", check, 1)
    assert facts1["world"] == 1 and facts0["world"] == 2
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"{check}: {k} differs between the two processes"
    after = {k: v for k, v in single.items() if not k.startswith("start.")}
    moved = [k for k in after if f"start.{k}" in single and not torch.equal(after[k], single[f"start.{k}"])]
    assert moved or check == "tallrec", f"{check}: the step changed no parameter"
    if check == "tallrec":  # LoRA's B starts at zero: the step made it non-zero
        assert any(k.endswith("lora_B.default.weight") and float(v.abs().max()) > 0 for k, v in after.items())
    diff = _max_diff(single, r0)
    assert diff <= TOL, f"{check}: two processes differ from one by {diff:.3g}"


def test_every_rank_runs_the_same_number_of_passes(runs):
    """Users split unevenly; the zero-weight repeats give both processes the same passes (one had none)."""
    owns = {}
    for check in ("rl-rl-only", "rl-sft+rl", "rl-mlp-only", "rl-no-cot", "tallrec"):
        f0, f1 = (_load(runs / "multi", check, r)[1] for r in (0, 1))
        assert f0["passes"] == f1["passes"] == max(f0["own"], f1["own"]), check
        owns[check] = (f0["own"], f1["own"])
    assert owns["rl-no-cot"] == (2, 0)  # a process with nothing of its own still stepped in time
    assert any(a != b for a, b in owns.values())


def test_a_resumed_two_process_run_equals_an_uninterrupted_one(runs):
    from safetensors.torch import load_file

    straight, split = runs / "multi" / "resume-straight", runs / "multi" / "resume-split"
    for f in ("model.safetensors", "head.safetensors"):
        a, b = load_file(str(straight / "final" / f)), load_file(str(split / "final" / f))
        assert _max_diff(a, b) == 0.0, f
    for d in (straight, split):  # only the main process writes: one row per step
        rows = (d / "log.csv").read_text().strip().splitlines()
        assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"], rows
        assert json.loads((d / "final" / "r2rank_train.json").read_text())["processes"] == 2
    assert (split / "checkpoints" / "LATEST").read_text().strip() == "step-000002"


def test_fsdp2_root_only_matches_one_process(runs):
    """The policy module under raw FSDP2 (fully_shard of the root, CPU mesh): the same AdamW step as one
    unsharded process, and the decoding loop runs on the whole parameters (Engine.full_parameters)."""
    single, f1 = _load(runs / "single", "fsdp2", 0)
    r0, f0 = _load(runs / "multi", "fsdp2", 0)
    r1, _ = _load(runs / "multi", "fsdp2", 1)
    assert f0["sharded"] and not f1["sharded"]
    assert _max_diff(r0, r1) == 0.0
    assert _max_diff(single, r0) <= TOL
    assert any(not torch.equal(single[k], single[f"start.{k}"]) for k in single if not k.startswith("start."))
    assert f0["generated"] == f1["generated"]


def test_fsdp2_per_layer_sharding_fails_with_the_shared_prefix(runs):
    """Why the FSDP2 config shards the root only: the shared-prefix forward runs every decoder layer twice,
    and per-layer FSDP2 frees a layer's unsharded parameters after the first of its two backward passes."""
    facts = json.loads((runs / "multi" / "fsdp2-layers.rank0.json").read_text())
    assert "storage of size 0" in facts["shared_prefix=True"], facts
    assert facts["shared_prefix=False"] == "ok"
