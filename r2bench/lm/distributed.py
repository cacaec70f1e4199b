"""Several processes under ``torchrun`` / ``accelerate launch``, and the sharding of users over them.

- :class:`DistContext`: one process, or several (gloo on CPU, nccl on CUDA), with the
  two reductions the trainers need. Gradients are averaged by hand after each backward
  pass instead of wrapping the model in ``DistributedDataParallel``: the trainers call
  the decoder and the LM head separately (only the response block goes through the
  vocabulary projection), which DDP's forward hooks would not see.
- :func:`shard_by_user`: the instances of one process; all 20 candidates of an
  instance, and all instances of a user, stay on one process.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from r2bench.stablehash import stable_hash64


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
