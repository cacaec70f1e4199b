"""Two CPU processes (gloo) shard the users and take the same synchronized RL step.

The processes are started like ``torchrun`` / ``accelerate launch`` would
(``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), each on its own users.
Their heads are deliberately initialised differently: the start-up broadcast must
make them equal, and after one step (gradients averaged across processes) every
parameter must still be identical on both, and different from the start.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[2]


def _worker() -> None:
    from safetensors.torch import save_file

    from r2bench.data.benchmark import load_benchmark
    from r2bench.r2rank.head import ScoringHead
    from r2bench.r2rank.rl import RLTrainer
    from r2bench.r2rank.train_config import RLConfig
    from r2bench.lm.backbones import load_policy
    from r2bench.lm.distributed import DistContext, shard_by_user

    torch.set_num_threads(1)
    out = Path(os.environ["R2_DDP_OUT"])
    dist = DistContext(backend="gloo")
    bench = load_benchmark(os.environ["R2_DDP_BENCH"])
    cfg = RLConfig(backbone=os.environ["R2_DDP_MODEL"], instances_per_step=2, ranking_samples=2,
                   max_reasoning_tokens=2, lr_policy=1e-3, lr_head=1e-2, ppo_epochs=2)
    model, tok = load_policy(cfg.backbone, cfg, device="cpu", dtype="float32")
    torch.manual_seed(100 + dist.rank)  # a different head on each process: the broadcast must fix it
    head = ScoringHead(model.config.hidden_size, 16)
    trainer = RLTrainer(cfg, model, tok, head, bench, seed=0, dist=dist)
    dist.broadcast_parameters([head, model])
    start = {f"head.{k}": v.detach().clone() for k, v in head.state_dict().items()}
    rows = shard_by_user(bench.split("train").to_dicts(), dist.rank, dist.world_size)[:2]
    log = trainer.train_step(rows)
    state = {f"head.{k}": v.detach().clone() for k, v in head.state_dict().items()}
    state.update({f"model.{k}": v.detach().clone().contiguous() for k, v in model.state_dict().items()})
    state.update({f"start.{k}": v for k, v in start.items()})
    save_file(state, str(out / f"rank{dist.rank}.safetensors"))
    (out / f"rank{dist.rank}.json").write_text(json.dumps(
        {"users": sorted({r["user_id"] for r in rows}), "reward": log.reward, "tokens": log.tokens}))
    dist.barrier()
    dist.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_take_the_same_step(tmp_path):
    from safetensors.torch import load_file

    from r2bench.data.benchmark import load_benchmark
    from tests.r2rank.test_training import make_tiny_lm, planted_benchmark, prompt_texts

    bench_dir = planted_benchmark(tmp_path / "bench", n_users=60)
    model, tok = make_tiny_lm(prompt_texts(load_benchmark(bench_dir)))
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "R2_DDP_OUT": str(tmp_path),
               "R2_DDP_BENCH": str(bench_dir), "R2_DDP_MODEL": str(tmp_path / "model"), "OMP_NUM_THREADS": "1",
               "R2BENCH_PROGRESS": "0", "PYTHONPATH": str(REPO)}
        procs.append(subprocess.Popen([sys.executable, "-c", "from tests.r2rank.test_ddp import _worker; _worker()"],
                                      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=300)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("the two processes did not finish within 300 s")
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-3000:] for o in outs)

    meta = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert meta[0]["users"] and meta[1]["users"]
    assert not set(meta[0]["users"]) & set(meta[1]["users"])  # sharded by user
    a, b = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs between the processes"
    moved = [k for k in a if k.startswith("head.") and not torch.equal(a[k], a["start." + k])]
    assert moved, "the synchronized step did not change the head"
