"""Two CPU processes on the accelerate engine (DDP over gloo) take exactly one process's Prompt4NR and R2ec step.

One launch of ``tests/baselines/engine_worker.py`` in two processes and one plain process run the same checks
in float64; the trained parameters after the step must equal the single process's to 1e-6 and be bitwise
identical across the two processes (as ``tests/lm/test_engine_distributed.py`` checks SFT, RL and TALLRec).
"""

from __future__ import annotations

import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")
pytest.importorskip("peft")

from tests.lm.test_engine_distributed import TOL, _free_port, _load, _max_diff, _run  # noqa: E402

CHECKS = ["prompt4nr", "r2ec"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from r2bench.data.benchmark import load_benchmark
    from tests.baselines.tiny import tiny_lm, tribes_benchmark

    root = tmp_path_factory.mktemp("engine_baselines")
    bench = tribes_benchmark(root / "bench", n_users=40)
    model, tok = tiny_lm(load_benchmark(bench))
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    args = ["-m", "tests.baselines.engine_worker", "--bench", str(bench), "--model", str(root / "model")]
    _run([sys.executable, *args, "--out", str(root / "single")], "the single process")
    _run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
          "--main_process_port", str(_free_port()), *args, "--out", str(root / "multi")],
         "accelerate launch of two processes")
    return root


@pytest.mark.parametrize("check", CHECKS)
def test_two_processes_take_the_single_process_step(runs, check):
    single, facts1 = _load(runs / "single", check, 0)
    r0, facts0 = _load(runs / "multi", check, 0)
    r1, facts_r1 = _load(runs / "multi", check, 1)
    assert facts1["world"] == 1 and facts0["world"] == 2
    assert facts0["passes"] == facts_r1["passes"] == max(facts0["own"], facts_r1["own"])  # equal passes
    assert facts0["own"] + facts_r1["own"] == facts1["own"]  # every instance trained exactly once
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"{check}: {k} differs between the two processes"
    assert any(k.endswith("lora_B.default.weight") and float(v.abs().max()) > 0 for k, v in single.items())
    if check == "prompt4nr":  # the new token rows (separator, prompt tokens) trained too
        assert any("trainable_tokens_delta" in k for k in single if not k.startswith("start."))
    diff = _max_diff(single, r0)
    assert diff <= TOL, f"{check}: two processes differ from one by {diff:.3g}"
