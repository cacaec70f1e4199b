"""Plumbing shared by R2Rank training (SFT, RL) and TALLRec.

- :class:`DistContext`: one process, or several under ``torchrun`` / ``accelerate
  launch`` (gloo on CPU, nccl on CUDA), with the two reductions the trainers need.
  Gradients are averaged by hand after each backward pass instead of wrapping the
  model in ``DistributedDataParallel``: the trainers call the decoder and the LM
  head separately (only the response block goes through the vocabulary
  projection), which DDP's forward hooks would not see.
- :func:`shard_by_user`: the instances of one process; all 20 candidates of an
  instance, and all instances of a user, stay on one process.
- :func:`load_policy` / :func:`save_policy`: a backbone for training, full or LoRA
  (peft), saved as safetensors.
- :class:`Checkpointer`: resumable checkpoints ``<out>/checkpoints/step-NNNNNN/``
  with the policy (model or adapter), ``head.safetensors``, ``optimizer.pt``
  (loaded back with ``weights_only=True``) and ``state.json``; ``LATEST`` names the
  newest, written last so that a killed run resumes from a complete checkpoint.
- :class:`CSVLog`: one CSV row per step (and TensorBoard scalars when asked).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from r2bench.atomic import atomic_path, write_json, write_text
from r2bench.stablehash import stable_hash64

log = logging.getLogger(__name__)


class DistContext:
    """torch.distributed set-up from the environment (``WORLD_SIZE``/``RANK``/``MASTER_ADDR``)."""

    def __init__(self, backend: str | None = None):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.started_here = False
        if self.world_size > 1 and not torch.distributed.is_initialized():
            backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
            if backend == "nccl":
                torch.cuda.set_device(self.local_rank)
            torch.distributed.init_process_group(backend=backend)
            self.started_here = True

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self) -> str:
        return f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu"

    def all_reduce_mean(self, tensors: list[torch.Tensor]) -> None:
        if self.world_size == 1:
            return
        flat = torch.cat([t.reshape(-1).float() for t in tensors])
        torch.distributed.all_reduce(flat)
        flat /= self.world_size
        i = 0
        for t in tensors:
            n = t.numel()
            t.copy_(flat[i:i + n].view_as(t).to(t.dtype))
            i += n

    def all_reduce_sum(self, x: float) -> float:
        if self.world_size == 1:
            return x
        # NCCL reduces CUDA tensors only; gloo takes CPU ones
        dev = self.device() if torch.distributed.get_backend() == "nccl" else "cpu"
        t = torch.tensor([x], dtype=torch.float64, device=dev)
        torch.distributed.all_reduce(t)
        return float(t.item())

    def broadcast_parameters(self, modules: list[torch.nn.Module]) -> None:
        """Make every process start from rank 0's weights."""
        if self.world_size == 1:
            return
        for m in modules:
            for p in m.parameters():
                torch.distributed.broadcast(p.data, src=0)

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.started_here and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def user_shard(user_id: str, world_size: int) -> int:
    """The process (0..world_size-1) that owns ``user_id``: a stable hash, never Python's hash()."""
    return stable_hash64(user_id) % max(world_size, 1)


def shard_by_user(rows: list[dict[str, Any]], rank: int, world_size: int) -> list[dict[str, Any]]:
    if world_size <= 1:
        return rows
    return [r for r in rows if user_shard(r["user_id"], world_size) == rank]


def load_policy(backbone: str, lora, device: str = "auto", dtype: str = "auto", adapter: str | None = None):
    """``(model, tokenizer)`` ready for training: full fine-tuning, or LoRA when ``lora.lora_r > 0``.

    ``adapter`` resumes a LoRA adapter saved by :func:`save_policy`.
    """
    from r2bench.r2rank.backbones import load_backbone

    model, tok = load_backbone(backbone, adapter=adapter, device=device, dtype=dtype,
                               merge_adapter=False, trainable=True)
    if lora.lora_r > 0 and adapter is None:
        from r2bench.extras import require

        peft = require("peft", purpose="LoRA training")
        targets: Any = lora.lora_targets
        if targets != "all-linear":
            targets = [t.strip() for t in str(targets).split(",") if t.strip()]
        cfg = peft.LoraConfig(r=lora.lora_r, lora_alpha=lora.lora_alpha, lora_dropout=lora.lora_dropout,
                              target_modules=targets, task_type="CAUSAL_LM")
        model = peft.get_peft_model(model, cfg)
    if lora.lora_r == 0 and adapter is None:
        for p in model.parameters():
            p.requires_grad_(True)
    model.eval()  # no dropout in rollouts; trainers switch to train() for their updates
    return model, tok


def is_peft(model) -> bool:
    return hasattr(model, "peft_config")


def save_policy(model, tokenizer, folder: Path, merged: bool = False) -> None:
    """The policy as safetensors: a LoRA adapter folder, or (``merged`` / full FT) a model folder."""
    folder.mkdir(parents=True, exist_ok=True)
    if is_peft(model) and merged:
        import copy

        merged_model = copy.deepcopy(model).merge_and_unload()
        merged_model.save_pretrained(folder, safe_serialization=True)
    else:
        model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


class Checkpointer:
    """Resumable checkpoints under ``<out>/checkpoints`` (see the module docstring)."""

    def __init__(self, out_dir: Path, keep: int = 2):
        self.root = Path(out_dir) / "checkpoints"
        self.keep = keep

    def latest(self) -> Path | None:
        f = self.root / "LATEST"
        if not f.is_file():
            return None
        d = self.root / f.read_text().strip()
        return d if (d / "state.json").is_file() else None

    def save(self, step: int, model, tokenizer, head, optimizer, state: dict[str, Any], save_model: bool = True) -> Path:
        name = f"step-{step:06d}"
        target = self.root / name
        with atomic_path(target) as tmp:
            tmp.mkdir(parents=True)
            if save_model:
                save_policy(model, tokenizer, tmp / "policy")
            if head is not None:
                head.save(tmp / "head.safetensors")
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            write_json(tmp / "state.json", {"step": step, **state})
        write_text(self.root / "LATEST", name)
        olds = sorted(d for d in self.root.glob("step-*") if d.is_dir() and d.name != name)
        for d in olds[: max(0, len(olds) - (self.keep - 1))]:
            shutil.rmtree(d, ignore_errors=True)
        return target

    @staticmethod
    def load_state(ckpt: Path) -> dict[str, Any]:
        return json.loads((ckpt / "state.json").read_text())

    @staticmethod
    def load_optimizer(ckpt: Path, optimizer) -> None:
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True, map_location="cpu"))


class CSVLog:
    """Append-only CSV of dataclass rows (the header is written once); optional TensorBoard."""

    def __init__(self, path: Path, tensorboard: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.path.parent / "tensorboard"))
            except ImportError:
                log.warning("tensorboard is not installed; logging to %s only", self.path)

    def write(self, row: Any) -> None:
        d = dataclasses.asdict(row) if dataclasses.is_dataclass(row) else dict(row)
        new = not self.path.is_file() or self.path.stat().st_size == 0
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(d))
            if new:
                w.writeheader()
            w.writerow(d)
        if self.tb is not None:
            step = int(d.get("step", 0))
            for k, v in d.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(k, v, step)

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (a resumed run re-does them)."""
        if not self.path.is_file():
            return
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            return
        keep = [r for r in rows if int(float(r.get("step", 0))) <= step]
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(keep)
