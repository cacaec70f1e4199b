"""Checkpoints, the policy's export and training logs, shared by every trainer (SFT, RL, TALLRec...).

- :func:`save_policy`: the policy as safetensors: a LoRA adapter folder, or a model folder;
- :class:`Checkpointer`: resumable checkpoints ``<out>/checkpoints/step-NNNNNN/``
  with the policy (model or adapter), ``head.safetensors``, the optimizer state
  (``optimizer.pt``, loaded back with ``weights_only=True``; or, where the engine shards it,
  accelerate's ``engine/`` folder) and ``state.json``; ``LATEST`` names the newest, written
  last so that a killed run resumes from a complete checkpoint. Every process calls it;
  the main process writes (``r2bench.lm.engine``);
- :class:`CSVLog`: one CSV row per step (and TensorBoard scalars when asked);
- :func:`peak_memory_mb`: the figure every step log reports.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from r2bench.atomic import atomic_path, write_json, write_text
from r2bench.lm.backbones import is_peft

log = logging.getLogger(__name__)


def peak_memory_mb(device: torch.device | str) -> float:
    """Peak memory of this process: CUDA allocator peak, or the max resident set size on CPU."""
    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def save_policy(model, tokenizer, folder: Path, merged: bool = False, state_dict: dict | None = None) -> None:
    """The policy as safetensors: a LoRA adapter folder, or (``merged`` / full FT) a model folder.

    ``state_dict``: the model's full state dict where the engine shards it (FSDP; see
    :meth:`r2bench.lm.engine.Engine.policy_state_dict`), else None (the module's own).
    """
    folder.mkdir(parents=True, exist_ok=True)
    kw = {} if state_dict is None else {"state_dict": state_dict}
    if is_peft(model) and merged:
        import copy

        merged_model = copy.deepcopy(model)
        if state_dict is not None:
            merged_model.load_state_dict(state_dict)
        merged_model.merge_and_unload().save_pretrained(folder, safe_serialization=True)
    else:
        model.save_pretrained(folder, safe_serialization=True, **kw)
    tokenizer.save_pretrained(folder)


def _sub(state: dict[str, Any] | None, prefix: str) -> dict[str, Any] | None:
    return None if state is None else {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


class CheckpointDir:
    """``<root>/checkpoints/<name>/`` folders, ``LATEST`` naming the newest complete one; the ``keep`` newest kept."""

    def __init__(self, root: str | Path, keep: int = 2):
        self.root = Path(root) / "checkpoints"
        self.keep = keep

    def latest(self) -> Path | None:
        f = self.root / "LATEST"
        if not f.is_file():
            return None
        d = self.root / f.read_text().strip()
        return d if (d / "state.json").is_file() else None

    def mark_latest(self, name: str, pattern: str = "*") -> None:
        """Name ``name`` the newest (written last: a killed run resumes from a complete checkpoint), then drop
        the oldest folders matching ``pattern`` beyond ``keep``."""
        write_text(self.root / "LATEST", name)
        olds = sorted(d for d in self.root.glob(pattern) if d.is_dir() and d.name != name)
        for d in olds[: max(0, len(olds) - (self.keep - 1))]:
            shutil.rmtree(d, ignore_errors=True)


class Checkpointer(CheckpointDir):
    """Resumable checkpoints under ``<out>/checkpoints`` (see the module docstring).

    Engine-aware: every process calls :meth:`save` and :meth:`load_optimizer`. Where each
    process holds the whole optimizer state (one process, DDP) the main process writes it as
    ``optimizer.pt`` and every process reads it back (``torch.load(weights_only=True)``);
    where the engine shards it (DeepSpeed ZeRO, FSDP) every process writes its shard through
    accelerate's ``save_state`` into ``engine/`` and reads it back with ``load_state``. The
    policy (``policy/``: the model or LoRA adapter) and the head (``head.safetensors``) are
    written whole by the main process (gathered first where the engine shards them).
    """

    def save(self, step: int, engine, model, tokenizer, optimizer, state: dict[str, Any],
             save_model: bool = True) -> Path:
        """Write ``step-NNNNNN`` (every process calls this). ``model`` is the prepared policy
        (``r2bench.lm.policy.Policy`` inside the engine's wrapper); its head, if any, is saved with
        ``head.save(path, state=...)``."""
        name = f"step-{step:06d}"
        target = self.root / name
        tmp = self.root / f".{name}.partial"
        if engine.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        engine.barrier()
        full = engine.policy_state_dict(model)  # collective where the engine shards the parameters
        if engine.shards_state:
            engine.save_state(tmp / "engine")
        if engine.is_main:
            policy = engine.unwrap(model)
            if save_model:
                save_policy(policy.lm, tokenizer, tmp / "policy", state_dict=_sub(full, "lm."))
            if policy.head is not None:
                policy.head.save(tmp / "head.safetensors", state=_sub(full, "head."))
            if not engine.shards_state:
                torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            write_json(tmp / "state.json", {"step": step, **state})
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
            self.mark_latest(name, "step-*")
        engine.barrier()
        return target

    @staticmethod
    def load_state(ckpt: Path) -> dict[str, Any]:
        return json.loads((ckpt / "state.json").read_text())

    @staticmethod
    def load_optimizer(ckpt: Path, optimizer, engine=None) -> None:
        """The optimizer state of ``ckpt`` into the (prepared) ``optimizer``, on every process."""
        if (ckpt / "engine").is_dir():
            if engine is None:
                raise ValueError(f"{ckpt} holds an engine-sharded state: pass the engine")
            engine.load_state(ckpt / "engine")
            return
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

    def truncate_after(self, step: int, key: str = "step") -> None:
        """Drop rows logged after ``step`` of column ``key`` (a resumed run re-does them)."""
        if not self.path.is_file():
            return
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            return
        keep = [r for r in rows if int(float(r.get(key, 0))) <= step]
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(keep)
