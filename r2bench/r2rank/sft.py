"""Supervised fine-tuning on the kept teacher responses (paper section 3.4).

Each example is ``chat prompt (Figure 2 template) + teacher response + EOS``; the
loss is the token cross-entropy on the response and EOS only (the prompt tokens are
context, never targets). Only the response positions go through the LM head, so a
50k vocabulary costs nothing on the (long) prompt. Full fine-tuning by default,
LoRA with ``lora_r > 0`` (merged into the exported model).

Checkpoints (safetensors, resumable) go to ``<out>/checkpoints``; the data order
is a seeded permutation per epoch, so a resumed run skips exactly the batches it
had done. Training runs on the accelerate engine (``r2bench.lm.engine``) through the
policy module (``r2bench.lm.policy``), one process or several. The result is ``<out>/final``: a model folder that ``r2bench r2rank rl
--set backbone=<out>/final --set variant=sft+rl`` starts from.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from r2bench.lm.examples import encode_example, prefix_sft_loss
from r2bench.r2rank.train_config import SFTConfig

log = logging.getLogger(__name__)


@dataclass
class SFTLog:
    step: int
    epoch: int
    loss: float
    tokens: int
    tokens_per_s: float
    step_s: float
    peak_mem_mb: float


def sft_loss(model, batch: list[tuple[list[int], int]], pad_id: int) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over the response tokens of a batch, and their count (any common prefix shared)."""
    total, n = prefix_sft_loss(model, batch, pad_id)
    return total / max(n, 1), n


def run_sft(cfg: SFTConfig, data_dir: str | Path, out_dir: str | Path, seed: int = 0, resume: bool = True,
            model=None, tokenizer=None, engine=None) -> Path:
    """Fine-tune on ``<data_dir>/sft_data.parquet`` (kept rows); export ``<out>/final``.

    ``engine``: the :class:`r2bench.lm.engine.Engine` (None = a new one). Each step takes a global
    batch of ``batch_size`` examples (a seeded permutation per epoch, the same on every process);
    each process runs one pass of the policy over its users' examples (a process with none of this
    batch repeats one with weight 0), and the loss is the batch's mean token cross-entropy, weighted
    so that the engine's average over processes equals it. Only the main process writes.
    """
    from r2bench.atomic import atomic_path, write_json
    from r2bench.lm.backbones import load_policy
    from r2bench.lm.checkpoints import Checkpointer, CSVLog, peak_memory_mb, save_policy
    from r2bench.lm.engine import Engine
    from r2bench.lm.examples import examples_batch
    from r2bench.lm.policy import Policy, response_nll
    from r2bench.progress import bar
    from r2bench.r2rank.synthesize import load_sft_data
    from r2bench.stablehash import hash_seed

    engine = engine if engine is not None else Engine()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = load_sft_data(data_dir).to_dicts()
    ckpt = Checkpointer(out)
    last = ckpt.latest() if resume else None
    main = engine.is_main
    if model is None:
        engine.seed(hash_seed(seed, 16))  # the same LoRA initialisation on every process
        adapter = str(last / "policy") if (last and cfg.lora_r > 0) else None
        backbone = str(last / "policy") if (last and cfg.lora_r == 0) else cfg.backbone
        model, tokenizer = load_policy(backbone, cfg, device=engine.model_device(cfg.device),
                                       dtype=cfg.dtype, adapter=adapter)
    params = [p for p in model.parameters() if p.requires_grad]
    policy, opt = engine.prepare(Policy(model), torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
                                 cfg.grad_clip)
    step = 0
    if last is not None:
        Checkpointer.load_optimizer(last, opt, engine)
        step = int(Checkpointer.load_state(last)["step"])
    examples = [encode_example(tokenizer, json.loads(r["messages"]), r["response"], cfg.max_length) for r in rows]
    users = [str(r.get("user_id", i)) for i, r in enumerate(rows)]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    dev = model.get_output_embeddings().weight.device
    per_epoch = max(1, -(-len(examples) // cfg.batch_size))
    total = per_epoch * cfg.epochs
    logger = CSVLog(out / "log.csv") if main else None
    if logger is not None:
        logger.truncate_after(step)
    meta = {"stage": "sft", "data": str(data_dir), "seed": seed, "examples": len(examples),
            "processes": engine.world_size, "engine": engine.kind}
    policy.train()
    with bar(total=total, desc="SFT", unit="step", initial=step, disable=not main) as pbar:
        while step < total:
            epoch, b = divmod(step, per_epoch)
            order = np.random.default_rng(hash_seed(seed, epoch)).permutation(len(examples))
            glob = [int(i) for i in order[b * cfg.batch_size:(b + 1) * cfg.batch_size]]  # the global batch
            shard = engine.shard([users[i] for i in glob])
            mine = shard.own or shard.items[:1]
            weights = torch.tensor([1.0] * len(shard.own) or [0.0], device=dev)
            n_tok = sum(len(examples[i][0]) - examples[i][1] for i in glob)
            t0 = time.perf_counter()
            with engine.micro_step(policy, last=True):
                batch = examples_batch([examples[glob[j]] for j in mine], pad, dev)
                nll, _ = response_nll(policy(batch), batch, weights)
                engine.backward(nll * (engine.world_size / max(n_tok, 1)))
            engine.step(policy, opt, cfg.grad_clip)
            step += 1
            dt = time.perf_counter() - t0
            loss = engine.sum([float(nll.detach())])[0] / max(n_tok, 1)
            if logger is not None:
                logger.write(SFTLog(step, epoch, loss, n_tok, n_tok / max(dt, 1e-9), dt, peak_memory_mb(dev)))
            pbar.update(1)
            pbar.set_postfix(loss=f"{loss:.3f}")
            if cfg.checkpoint_every and (step % cfg.checkpoint_every == 0 or step == total):
                ckpt.save(step, engine, policy, tokenizer, opt, {"config": asdict(cfg), **meta})
    policy.eval()
    final = out / "final"
    full = engine.policy_state_dict(policy)  # collective where the engine shards the parameters
    if main:
        with atomic_path(final) as tmp:
            tmp.mkdir(parents=True)
            lm_state = None if full is None else {k[3:]: v for k, v in full.items() if k.startswith("lm.")}
            save_policy(model, tokenizer, tmp, merged=True, state_dict=lm_state)
            write_json(tmp / "r2rank_train.json", {"steps": step, "config": asdict(cfg), **meta})
    engine.barrier()
    return final
