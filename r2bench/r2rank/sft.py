"""Supervised fine-tuning on the kept teacher responses (paper section 3.4).

Each example is ``chat prompt (Figure 2 template) + teacher response + EOS``; the
loss is the token cross-entropy on the response and EOS only (the prompt tokens are
context, never targets). Only the response positions go through the LM head, so a
50k vocabulary costs nothing on the (long) prompt. Full fine-tuning by default,
LoRA with ``lora_r > 0`` (merged into the exported model).

Checkpoints (safetensors, resumable) go to ``<out>/checkpoints``; the data order
is a seeded permutation per epoch, so a resumed run skips exactly the batches it
had done. The result is ``<out>/final``: a model folder that ``r2bench r2rank rl
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
            model=None, tokenizer=None, dist=None) -> Path:
    """Fine-tune on ``<data_dir>/sft_data.parquet`` (kept rows); export ``<out>/final``."""
    from r2bench.atomic import atomic_path, write_json
    from r2bench.progress import bar
    from r2bench.lm.checkpoints import Checkpointer, CSVLog, peak_memory_mb, save_policy
    from r2bench.r2rank.synthesize import load_sft_data
    from r2bench.lm.backbones import load_policy
    from r2bench.lm.distributed import shard_by_user
    from r2bench.stablehash import hash_seed

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df = load_sft_data(data_dir)
    rows = shard_by_user(df.to_dicts(), dist.rank if dist else 0, dist.world_size if dist else 1)
    ckpt = Checkpointer(out)
    last = ckpt.latest() if resume else None
    main = dist is None or dist.is_main
    if model is None:
        adapter = str(last / "policy") if (last and cfg.lora_r > 0) else None
        backbone = str(last / "policy") if (last and cfg.lora_r == 0) else cfg.backbone
        model, tokenizer = load_policy(backbone, cfg, device=dist.device() if dist else cfg.device,
                                       dtype=cfg.dtype, adapter=adapter)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if dist is not None:
        dist.broadcast_parameters([model])
    step = 0
    if last is not None:
        Checkpointer.load_optimizer(last, opt)
        step = int(Checkpointer.load_state(last)["step"])
    examples = [encode_example(tokenizer, json.loads(r["messages"]), r["response"], cfg.max_length) for r in rows]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    per_epoch = max(1, -(-len(examples) // cfg.batch_size))
    total = per_epoch * cfg.epochs
    logger = CSVLog(out / "log.csv")
    logger.truncate_after(step)
    meta = {"stage": "sft", "data": str(data_dir), "seed": seed, "examples": len(examples)}
    model.train()
    with bar(total=total, desc="SFT", unit="step", initial=step) as pbar:
        while step < total:
            epoch, b = divmod(step, per_epoch)
            order = np.random.default_rng(hash_seed(seed, epoch)).permutation(len(examples))
            batch = [examples[i] for i in order[b * cfg.batch_size:(b + 1) * cfg.batch_size]]
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss, n_tok = sft_loss(model, batch, pad)
            loss.backward()
            if dist is not None and dist.world_size > 1:
                for p in params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                dist.all_reduce_mean([p.grad for p in params])
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            step += 1
            dt = time.perf_counter() - t0
            if main:
                logger.write(SFTLog(step, epoch, float(loss.detach()), n_tok, n_tok / max(dt, 1e-9), dt,
                                    peak_memory_mb(model.get_output_embeddings().weight.device)))
            pbar.update(1)
            pbar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            if main and cfg.checkpoint_every and (step % cfg.checkpoint_every == 0 or step == total):
                ckpt.save(step, model, tokenizer, None, opt, {"config": asdict(cfg), **meta})
    model.eval()
    final = out / "final"
    if main:
        with atomic_path(final) as tmp:
            tmp.mkdir(parents=True)
            save_policy(model, tokenizer, tmp, merged=True)
            write_json(tmp / "r2rank_train.json", {"steps": step, "config": asdict(cfg), **meta})
    if dist is not None:
        dist.barrier()
    return final
