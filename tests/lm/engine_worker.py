"""The trainers on the accelerate engine, run once in one process and once under ``accelerate launch``.

``tests/lm/test_engine_distributed.py`` runs this module twice on the same inputs::

    python -m tests.lm.engine_worker --out OUT/single ...                                   # the reference
    accelerate launch --cpu --num_processes 2 -m tests.lm.engine_worker --out OUT/multi ...   # gloo, DDP

and asserts on what each process writes under ``--out``: ``<check>.rank<r>.safetensors``
(every trained parameter after the step) and ``<check>.rank<r>.json`` (facts about the
run). The checks, each on a *global* batch chosen so that the two processes' shares are
uneven (one of them may have nothing: zero-weight repeats keep the passes equal):

- ``sft``: one SFT step (full fine-tuning) through ``run_sft``;
- ``rl-<variant>``: one RL step (``ppo_epochs=2``: two optimizer steps) of each variant
  (rl-only with micro-batching and the batch-mean baseline, sft+rl with LoRA and seq-mean,
  mlp-only, no-cot) through ``RLTrainer``;
- ``tallrec``: one TALLRec optimizer step (LoRA) through ``TALLRecMethod.fit``;
- ``resume``: ``run_rl`` for 2 steps straight, and 1 step then resumed to 2, in two
  output folders (the test compares the final folders and the logs);
- ``fsdp2`` (two processes only): the policy module under raw FSDP2 (``fully_shard`` of the
  root on a CPU device mesh) takes one AdamW step on per-user shards of a global batch, and
  greedy decoding runs inside ``Engine.full_parameters``; the single process runs the same
  without sharding; ``fsdp2-layers``: per-layer sharding with and without the shared prefix
  (the error it raises is recorded).

Everything runs in float64, so that the only differences between one and two processes
(the order in which gradients are summed) stay far below the tests' 1e-6 bound even after
Adam's normalisation.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch


def _snapshot(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", torch.float64).clone() for k, v in tensors.items()}


def _dump(out: Path, name: str, rank: int, tensors: dict[str, torch.Tensor], facts: dict,
          start: dict[str, torch.Tensor] | None = None) -> None:
    """The parameters after the step (and ``start.<name>``: before it) and the facts of the run."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = _snapshot(tensors)
    state.update({f"start.{k}": v for k, v in (start or {}).items()})
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / f"{name}.rank{rank}.safetensors"))
    (out / f"{name}.rank{rank}.json").write_text(json.dumps(facts, indent=1, default=str))


def _trained(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: p for k, p in module.named_parameters() if p.requires_grad}


def _pick(rows: list[dict], owners: list[int], world: int = 2) -> list[dict]:
    """Train rows whose users fall on the processes ``owners`` (in order) when sharded over ``world``."""
    from r2bench.lm.engine import user_shard

    out, used = [], set()
    for want in owners:
        for r in rows:
            if r["user_id"] not in used and user_shard(r["user_id"], world) == want:
                out.append(r)
                used.add(r["user_id"])
                break
    return out


def check_sft(args, engine, bench, out: Path) -> None:
    import polars as pl

    from r2bench.lm.backbones import load_policy
    from r2bench.r2rank.sft import run_sft
    from r2bench.r2rank.synthesize import select_pairs
    from r2bench.r2rank.train_config import SFTConfig, SynthesizeConfig

    data = out / "sft-data"
    if engine.is_main:
        pairs = select_pairs(bench, SynthesizeConfig(max_instances=4), seed=0)
        data.mkdir(parents=True, exist_ok=True)
        pl.DataFrame([{"instance_id": p["instance_id"], "user_id": p["user_id"], "item_id": p["item_id"],
                       "label": p["label"], "messages": json.dumps(p["messages"]), "kept": True,
                       "response": "#Initial reasoning: Gold.\n<answer>" + ("Recommend" if p["label"] else "Not Recommend")
                       + "</answer>"} for p in pairs]).write_parquet(data / "sft_data.parquet")
    engine.barrier()
    cfg = SFTConfig(backbone=args.model, batch_size=8, lr=1e-3, checkpoint_every=0, device="cpu", dtype="float64")
    model, tok = load_policy(cfg.backbone, cfg, device="cpu", dtype="float64")
    start = _snapshot(_trained(model))
    run_sft(cfg, data, out / "sft-run", seed=0, model=model, tokenizer=tok, engine=engine)
    _dump(out, "sft", engine.rank, _trained(model), {"world": engine.world_size}, start)


RL_CASES = {
    # variant: (owners of the global batch's users under 2 processes, extra config)
    "rl-only": ([0, 1, 0], {"micro_batch": 4, "ppo_baseline": "batch-mean"}),
    "sft+rl": ([1, 1, 0], {"lora_r": 4, "lora_alpha": 8, "ppo_reduction": "seq-mean"}),
    "mlp-only": ([1, 0, 1], {}),
    "no-cot": ([0, 0], {}),  # the second process has no instance of its own this step
}


def check_rl(args, engine, bench, out: Path, variant: str) -> None:
    from r2bench.lm.backbones import load_policy
    from r2bench.r2rank.rl import RLTrainer, fresh_head, train_rows
    from r2bench.r2rank.train_config import RLConfig
    from r2bench.stablehash import hash_seed

    owners, extra = RL_CASES[variant]
    cfg = RLConfig(**{"backbone": args.model, "variant": variant, "ranking_samples": 2, "max_reasoning_tokens": 2,
                      "lr_policy": 1e-3, "lr_head": 1e-2, "head_hidden": 16, "device": "cpu", "dtype": "float64",
                      "baseline": "mean", **extra})
    engine.seed(hash_seed(0, 16))
    model, tok = load_policy(cfg.backbone, cfg, device="cpu", dtype="float64")
    torch.manual_seed(hash_seed(0, 17))
    head = fresh_head(model.config.hidden_size, cfg.head_hidden).to(torch.float64)
    with torch.no_grad():  # a non-zero output layer, so that the head's gradient reaches the LM
        head.net[-1].weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(3))
    trainer = RLTrainer(cfg, model, tok, head, bench, seed=0, engine=engine)
    batch = _pick(train_rows(bench), owners)

    def params():
        out = {f"lm.{k}": v for k, v in _trained(model).items()}
        out.update({f"head.{k}": v for k, v in head.named_parameters()})
        return out

    start = _snapshot(params())
    entry = trainer.train_step(batch)
    shard = engine.shard([r["user_id"] for r in batch])
    _dump(out, f"rl-{variant}", engine.rank, params(),
          {"reward": entry.reward, "tokens": entry.tokens, "pl_loss": entry.pl_loss, "ppo_loss": entry.ppo_loss,
           "own": shard.n_own, "passes": len(shard.items), "world": engine.world_size}, start)


def check_tallrec(args, engine, bench, out: Path) -> None:
    from baselines.tallrec import TALLRecConfig, TALLRecMethod
    from r2bench.lm.backbones import load_backbone

    model, tok = load_backbone(args.model, device="cpu", dtype="float64")
    cfg = TALLRecConfig(lora_r=4, lora_alpha=8, max_instances=6, negatives_per_positive=1, epochs=1, batch_size=12,
                        lr=3e-3, save_to=str(out / "tallrec-run"), device="cpu", dtype="float64")
    m = TALLRecMethod(cfg, seed=0)
    m.set_model(model, tok)
    m.set_engine(engine)
    m.fit(bench)
    shard = engine.shard([u for u in m._examples(bench)[0]])  # one batch: all 6 instances
    _dump(out, "tallrec", engine.rank, _trained(m.model),
          {**m.info(), "world": engine.world_size, "own": shard.n_own, "passes": len(shard.items)})


def check_resume(args, engine, bench, out: Path) -> None:
    from r2bench.r2rank.rl import run_rl
    from r2bench.r2rank.train_config import RLConfig

    cfg = RLConfig(backbone=args.model, steps=2, instances_per_step=3, ranking_samples=2, max_reasoning_tokens=2,
                   lr_policy=1e-3, lr_head=1e-2, head_hidden=16, checkpoint_every=1, eval_every=1, eval_instances=3,
                   device="cpu", dtype="float64")
    run_rl(cfg, bench, out / "resume-straight", seed=0, engine=engine)
    cfg.steps = 1
    run_rl(cfg, bench, out / "resume-split", seed=0, engine=engine)
    cfg.steps = 2
    run_rl(cfg, bench, out / "resume-split", seed=0, engine=engine)  # resumes from step 1
    (out / f"resume.rank{engine.rank}.json").write_text(json.dumps({"world": engine.world_size}))


def _fsdp_inputs(tok, bench):
    """A global batch of 3 instances (users on processes 0, 1, 0) as policy batches with decision positions;
    their users, the batches, and each instance's first prompt."""
    from r2bench.lm.generation import chat_prompt_ids
    from r2bench.lm.policy import layout_rows
    from r2bench.lm.prompts import instance_prompt
    from r2bench.r2rank.rl import train_rows

    rows = _pick(train_rows(bench), [0, 1, 0])
    recs, batches = bench.item_records(), []
    for i, r in enumerate(rows):
        prompts = [chat_prompt_ids(tok, m) for m in instance_prompt(r, recs, bench.profile_fields).all_messages()[:4]]
        g = torch.Generator().manual_seed(100 + i)
        responses = [torch.randint(5, 200, (2 + j % 3,), generator=g).tolist() for j in range(len(prompts))]
        b = layout_rows(prompts, responses, tok.pad_token_id, "cpu")
        b.decision_row = torch.arange(len(prompts))
        b.decision_col = torch.full((len(prompts),), b.prompt_width, dtype=torch.long)
        batches.append(b)
        rows[i] = prompts[0]
    return [r["user_id"] for r in _pick(train_rows(bench), [0, 1, 0])], batches, rows


def _fsdp_policy(args):
    from r2bench.lm.backbones import load_backbone
    from r2bench.lm.policy import Policy
    from r2bench.r2rank.head import ScoringHead

    model, tok = load_backbone(args.model, device="cpu", dtype="float64", trainable=True)
    for p in model.parameters():
        p.requires_grad_(True)
    torch.manual_seed(5)
    return Policy(model, ScoringHead(model.config.hidden_size, 16).to(torch.float64)), tok


def check_fsdp2(args, engine, bench, out: Path) -> None:
    """One AdamW step of the policy module under raw FSDP2 (root-only), against the same step unsharded."""
    from r2bench.lm.engine import shard_batch
    from r2bench.lm.generation import generate_reasonings
    from r2bench.lm.policy import response_nll

    policy, tok = _fsdp_policy(args)
    users, batches, first_prompts = _fsdp_inputs(tok, bench)
    world, rank = engine.world_size, engine.rank
    sharded = world > 1
    if sharded:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        fully_shard(policy, mesh=init_device_mesh("cpu", (world,)))  # the root only: see the docs
    start = _snapshot({k: (v.full_tensor() if hasattr(v, "full_tensor") else v) for k, v in policy.named_parameters()})
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    shard = shard_batch(users, rank, world)
    for j, (i, w) in enumerate(zip(shard.items, shard.weights)):
        last = j == len(shard.items) - 1
        if sharded:
            policy.set_requires_gradient_sync(last)
        b = batches[i]
        o = policy(b)
        nll, _ = response_nll(o, b)
        ((nll + o.scores.square().sum()) * (w * world / len(users))).backward()
    opt.step()
    full = {k: (v.full_tensor() if hasattr(v, "full_tensor") else v) for k, v in policy.named_parameters()}
    with torch.no_grad(), engine.full_parameters(policy):  # piecewise calls of the LM: the decoding loop
        gen = generate_reasonings(policy.lm, tok, [first_prompts[0]], max_new_tokens=3)[0].token_ids
    _dump(out, "fsdp2", rank, full, {"generated": gen, "passes": len(shard.items), "own": shard.n_own,
                                     "world": world, "sharded": sharded}, start)


def check_fsdp2_layers(args, engine, bench, out: Path) -> None:
    """Per-layer FSDP2 sharding with the shared-prefix forward (which runs every decoder layer twice) and without."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from r2bench.lm.policy import response_nll

    facts = {}
    for shared in (True, False):
        policy, tok = _fsdp_policy(args)
        _, batches, _ = _fsdp_inputs(tok, bench)
        mesh = init_device_mesh("cpu", (engine.world_size,))
        for layer in policy.lm.get_decoder().layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(policy, mesh=mesh)
        try:
            o = policy(batches[0], shared_prefix=shared)
            (response_nll(o, batches[0])[0] + o.scores.sum()).backward()
            facts[f"shared_prefix={shared}"] = "ok"
        except RuntimeError as exc:
            facts[f"shared_prefix={shared}"] = str(exc).splitlines()[0][:300]
    (out / f"fsdp2-layers.rank{engine.rank}.json").write_text(json.dumps(facts, indent=1))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--checks", default="sft,rl,tallrec,resume,fsdp2")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("R2BENCH_PROGRESS", "0")
    from r2bench.data.benchmark import load_benchmark
    from r2bench.lm.engine import Engine

    engine = Engine()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bench = load_benchmark(args.bench)
    checks = args.checks.split(",")
    try:
        if "sft" in checks:
            check_sft(args, engine, bench, out)
        if "rl" in checks:
            for variant in RL_CASES:
                check_rl(args, engine, bench, out, variant)
        if "tallrec" in checks:
            check_tallrec(args, engine, bench, out)
        if "resume" in checks:
            check_resume(args, engine, bench, out)
        if "fsdp2" in checks:
            check_fsdp2(args, engine, bench, out)
            if engine.world_size > 1:
                check_fsdp2_layers(args, engine, bench, out)
        (out / f"done.rank{engine.rank}").write_text("ok")
    finally:
        engine.end()


if __name__ == "__main__":
    main()
