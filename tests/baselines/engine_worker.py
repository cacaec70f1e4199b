"""Prompt4NR and R2ec on the accelerate engine, run once in one process and once under ``accelerate launch``.

``tests/baselines/test_engine_distributed.py`` runs this module twice on the same inputs (as
``tests/lm/engine_worker.py`` does for SFT, RL and TALLRec) and compares what each process writes
under ``--out``: ``<check>.rank<r>.safetensors`` (every trained parameter after the step, and
``start.<name>`` before it) and ``<check>.rank<r>.json`` (facts about the run). Checks:

- ``prompt4nr``: one optimizer step of the continuous form with LoRA (so the new token rows train too)
  on a global batch of 6 instances;
- ``r2ec``: one RecPO step (4 users x 4 sampled reasonings, catalog reward, per-sequence advantages).

Everything runs in float64 on the tiny model, so that one and two processes differ only by the order
in which gradients are summed.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from tests.lm.engine_worker import _dump, _trained


def _facts(engine, users: list[str]) -> dict:
    shard = engine.shard(users)
    return {"world": engine.world_size, "own": shard.n_own, "passes": len(shard.items)}


def check_prompt4nr(args, engine, bench, out: Path) -> None:
    from baselines.prompt4nr import Prompt4NRConfig, Prompt4NRMethod
    from r2bench.lm.backbones import load_backbone

    model, tok = load_backbone(args.model, device="cpu", dtype="float64")
    cfg = Prompt4NRConfig(form="continuous", lora_r=4, lora_alpha=8, item_text="fields", max_instances=6,
                          negatives_per_positive=2, epochs=1, batch_size=18, lr=3e-3, val_instances=2,
                          save_to=str(out / "p4-run"), device="cpu", dtype="float64")
    m = Prompt4NRMethod(cfg, seed=0)
    m.set_model(model, tok)
    m.set_engine(engine)
    m.fit(bench)
    users = [g.user for g in m._groups(bench)]
    _dump(out, "prompt4nr", engine.rank, _trained(m.model), {**_facts(engine, users), "history": m.info()["history"]})


def check_r2ec(args, engine, bench, out: Path) -> None:
    from baselines.r2ec import R2ecConfig, R2ecMethod
    from baselines.trainable import sample_train_rows
    from r2bench.lm.backbones import load_backbone

    model, tok = load_backbone(args.model, device="cpu", dtype="float64")
    cfg = R2ecConfig(lora_r=4, lora_alpha=16, lora_targets="all-linear", max_instances=4, epochs=1, users_per_step=4,
                     group_size=4, max_reasoning_tokens=3, lr=3e-3, warmup_steps=0, eval_every=0, eval_on_start=False,
                     val_instances=2, select_best=False, save_to=str(out / "r2ec-run"), device="cpu", dtype="float64")
    m = R2ecMethod(cfg, seed=0)
    m.set_model(model, tok)
    m.set_engine(engine)
    m.fit(bench)
    users = [str(r["user_id"]) for r in sample_train_rows(bench, 4, 0, "r2ec")]
    _dump(out, "r2ec", engine.rank, _trained(m.model), {**_facts(engine, users), "steps": m.info()["steps"]})


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--checks", default="prompt4nr,r2ec")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("R2BENCH_PROGRESS", "0")
    from r2bench.data.benchmark import load_benchmark
    from r2bench.lm.engine import Engine

    engine = Engine()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bench = load_benchmark(args.bench)
    try:
        for check in args.checks.split(","):
            {"prompt4nr": check_prompt4nr, "r2ec": check_r2ec}[check](args, engine, bench, out)
        (out / f"done.rank{engine.rank}").write_text("ok")
    finally:
        engine.end()


if __name__ == "__main__":
    main()
