"""accelerate as the training engine: DDP, DeepSpeed ZeRO and FSDP2 under every LLM trainer.

Every trainer (R2Rank's SFT and RL, TALLRec, and the trainable baselines) runs its passes
through the policy module (``r2bench.lm.policy.Policy``) prepared by :class:`Engine`, a
thin layer over ``accelerate.Accelerator``:

- ``prepare(policy, optimizer)``: ``Accelerator.prepare``; what it wraps the policy in comes
  from the launch (``accelerate launch --config_file configs/accelerate/<name>.yaml``, or
  ``torchrun``): DistributedDataParallel, a DeepSpeed ZeRO engine or FSDP2; one process runs
  the module as it is. Several processes on a machine without CUDA (``accelerate launch
  --multi_gpu --num_processes N``, or ``torchrun``) run DDP over gloo on the CPU (the tests do;
  accelerate's own ``--cpu --num_processes N`` starts one process where there is no mpirun). DDP and DeepSpeed
  broadcast rank 0's weights when they wrap the model, so every rank starts equal; the
  trainers also seed everything identically (:meth:`Engine.seed`), which FSDP2 needs (each
  rank shards its own copy). r2bench reduces no gradient itself: the engine does.
- ``micro_step(model, last)`` + ``backward(loss)``: gradient accumulation over several
  forward/backward passes per optimizer step: every pass but the ``last`` runs under
  ``accelerator.no_sync`` (DDP: no all-reduce; FSDP2: no reduce-scatter), and
  ``accelerator.sync_gradients`` marks the last one (DeepSpeed's accumulation boundary:
  ``accelerator.backward`` then runs DeepSpeed's own clipping and optimizer step);
- ``step(model, optimizer, max_norm)``: ``accelerator.clip_grad_norm_`` (DeepSpeed clips
  itself, with the ``gradient_clipping`` that :meth:`prepare` writes into its config) and
  the optimizer step;
- ``sum(values)``: the sum over processes of a few *scalars* (token counts, rewards, logged
  figures) through ``accelerator.reduce``, never of gradients;
- ``full_parameters(model)``: the whole parameters for passes that call the LM piecewise
  (the hand-written decoding loop): FSDP2 ``unshard()`` / ``reshard()``; nothing elsewhere.

Sharding by user and equal passes on every rank. A trainer draws its *global* batch (the
same seeded draw on every rank) and each process keeps the items of its users
(:func:`user_shard`: a stable hash, so all 20 candidates of an instance and all instances
of a user stay on one process). Users rarely divide evenly, so :func:`shard_batch` pads
every process's list to the largest share with zero-weight repeats of one of its own
items (of the global batch's first item when it has none): every rank then runs the same
number of forward and backward passes, which FSDP2 (an all-gather per forward), ZeRO and
DDP's last synchronised backward need to stay in step, and a repeat with weight 0 adds
exactly nothing to the gradient. Losses are weighted so that the engine's average over
processes equals the single-process loss of the global batch: an item weighs
``world_size / global count`` (or per token, ``world_size / global tokens``), a pad 0.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from r2bench.stablehash import stable_hash64

log = logging.getLogger(__name__)


def user_shard(user_id: str, world_size: int) -> int:
    """The process (0..world_size-1) that owns ``user_id``: a stable hash, never Python's hash()."""
    return stable_hash64(user_id) % max(world_size, 1)


def shard_by_user(rows: list[dict[str, Any]], rank: int, world_size: int) -> list[dict[str, Any]]:
    """The rows of one process (unpadded): all rows of a user on the same process."""
    if world_size <= 1:
        return rows
    return [r for r in rows if user_shard(r["user_id"], world_size) == rank]


@dataclass
class Shard:
    """This process's share of a global batch of ``n_global`` items.

    ``items``: indices into the global batch, this process's own first, then zero-weight
    repeats up to the largest share on any process (every process gets ``len(items)``
    passes); ``weights``: 1.0 for an own item, 0.0 for a repeat; ``n_own``: own items.
    """

    items: list[int]
    weights: list[float]
    n_own: int
    n_global: int

    @property
    def own(self) -> list[int]:
        return self.items[: self.n_own]


def shard_batch(users: Sequence[str], rank: int, world_size: int) -> Shard:
    """The share of process ``rank`` of a global batch whose items belong to ``users`` (see the module docstring)."""
    owners = [user_shard(str(u), world_size) for u in users]
    own = [i for i, o in enumerate(owners) if o == rank]
    most = max((owners.count(r) for r in range(max(world_size, 1))), default=0)
    fill = own[0] if own else 0
    pads = most - len(own)
    return Shard(items=own + [fill] * pads, weights=[1.0] * len(own) + [0.0] * pads, n_own=len(own),
                 n_global=len(users))


class Engine:
    """One process, or several under ``accelerate launch`` / ``torchrun``, through ``accelerate.Accelerator``.

    One unlaunched process leaves the model where the trainer loaded it (its config's
    ``device``); launched processes take the launch's devices (:meth:`model_device`).
    """

    def __init__(self):
        from r2bench.extras import require

        require("accelerate", purpose="training (the accelerate engine)")
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        # Several processes started by torchrun (`accelerate launch --multi_gpu`, `torchrun`) on a machine without
        # CUDA: DDP over gloo on the CPU. (accelerate itself only does that with cpu=True, and its `--cpu` launcher
        # starts one process unless it can call mpirun.)
        cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
        # device_placement=False: the trainers load the model on model_device() themselves (a model a caller
        # passes in stays where it is); broadcast_buffers=False: no buffer (e.g. rotary frequencies) changes
        # during training, so DDP's forward needs no collective and a no-gradient forward never waits.
        self.acc = Accelerator(cpu=cpu, device_placement=False,
                               kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)])

    # ------------------------------------------------------------------ who and where
    @property
    def rank(self) -> int:
        return int(self.acc.process_index)

    @property
    def world_size(self) -> int:
        return int(self.acc.num_processes)

    @property
    def is_main(self) -> bool:
        return bool(self.acc.is_main_process)

    @property
    def device(self) -> torch.device:
        return self.acc.device

    @property
    def kind(self) -> str:
        """``NO`` (one process), ``MULTI_CPU``, ``MULTI_GPU`` (DDP), ``DEEPSPEED`` or ``FSDP``."""
        return str(self.acc.distributed_type).split(".")[-1]

    @property
    def shards_state(self) -> bool:
        """Whether the optimizer state (and, for FSDP, the parameters) are split across processes."""
        return self.kind in ("DEEPSPEED", "FSDP")

    def model_device(self, requested: str = "auto") -> str:
        """Where a trainer loads its model: the launch's device when launched, else ``requested``."""
        return str(self.device) if self.world_size > 1 or self.kind != "NO" else requested

    def shard(self, users: Sequence[str]) -> Shard:
        """:func:`shard_batch` for this process."""
        return shard_batch(users, self.rank, self.world_size)

    @staticmethod
    def seed(seed: int) -> None:
        """The same seed on every process (model/head initialisation must agree for FSDP2)."""
        from accelerate.utils import set_seed

        set_seed(int(seed) % 2**32)  # numpy takes 32-bit seeds

    # ------------------------------------------------------------------ training
    def prepare(self, policy: torch.nn.Module, optimizer: torch.optim.Optimizer,
                max_grad_norm: float = 0.0) -> tuple[Any, Any]:
        """``Accelerator.prepare(policy, optimizer)``; for DeepSpeed, the clipping and the (nominal)
        micro-batch size are written into its config first (its ``auto`` values need them)."""
        if self.kind == "DEEPSPEED":
            cfg = self.acc.state.deepspeed_plugin.deepspeed_config
            clip = float(max_grad_norm or 0.0)
            if cfg.get("gradient_clipping", "auto") == "auto":
                cfg["gradient_clipping"] = clip
            elif float(cfg["gradient_clipping"]) != clip:
                log.warning("DeepSpeed config gradient_clipping=%s overrides the trainer's grad_clip=%s",
                            cfg["gradient_clipping"], clip)
            for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
                if cfg.get(key, "auto") == "auto":
                    cfg[key] = 1  # r2bench counts its own passes; every pass is one "micro-batch" to DeepSpeed
        return self.acc.prepare(policy, optimizer)

    def unwrap(self, model: Any) -> Any:
        """The policy module inside a DDP/DeepSpeed wrapper (FSDP2 shards in place: the same module)."""
        return self.acc.unwrap_model(model)

    @contextlib.contextmanager
    def micro_step(self, model: Any, last: bool) -> Iterator[None]:
        """One forward/backward pass of an optimizer step; gradients are synchronised after the ``last`` one."""
        self.acc.sync_gradients = bool(last)
        try:
            if last:
                yield
            else:
                with self.acc.no_sync(model):
                    yield
        finally:
            self.acc.sync_gradients = True

    def backward(self, loss: torch.Tensor) -> None:
        self.acc.backward(loss)

    def step(self, model: Any, optimizer: Any, max_norm: float = 0.0) -> float | None:
        """Clip (``max_norm > 0``), step and zero the gradients; returns the gradient norm when known."""
        norm = None
        if max_norm and max_norm > 0:
            norm = self.acc.clip_grad_norm_(model.parameters(), max_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return None if norm is None else float(norm)

    @contextlib.contextmanager
    def full_parameters(self, model: Any) -> Iterator[None]:
        """Whole parameters inside (FSDP2: ``unshard()`` then ``reshard()``), for passes that call the LM piecewise."""
        from torch.distributed.fsdp import FSDPModule

        units = [m for m in model.modules() if isinstance(m, FSDPModule)] if isinstance(model, torch.nn.Module) else []
        for m in units:
            m.unshard()
        try:
            yield
        finally:
            for m in units:
                m.reshard()

    # ------------------------------------------------------------------ scalars and synchronisation
    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums over processes of a few scalars (counts, rewards, logged figures; never gradients)."""
        if self.world_size == 1:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        return [float(v) for v in self.acc.reduce(t, reduction="sum").tolist()]

    def barrier(self) -> None:
        self.acc.wait_for_everyone()

    # ------------------------------------------------------------------ checkpoints of sharded state
    def policy_state_dict(self, model: Any) -> dict[str, torch.Tensor] | None:
        """The full state dict of the policy where it is sharded (FSDP: every process must call this;
        DeepSpeed ZeRO-3 gathers too); None where every process holds it whole (one process, DDP, ZeRO-1/2)."""
        if self.kind == "FSDP" or (self.kind == "DEEPSPEED" and
                                   self.acc.state.deepspeed_plugin.zero_stage == 3):
            return self.acc.get_state_dict(model)
        return None

    def save_state(self, folder) -> None:
        """accelerate's sharded checkpoint (optimizer and model shards; every process writes its part)."""
        self.acc.save_state(str(folder))

    def load_state(self, folder) -> None:
        self.acc.load_state(str(folder))

    def end(self) -> None:
        """Finish: destroy the process group (the CLI calls this once, after the trainer returns)."""
        self.acc.end_training()

