"""Checkpoints, the policy's export and training logs, shared by every trainer (SFT, RL, TALLRec...).

- :func:`save_policy`: the policy as safetensors: a LoRA adapter folder, or a model folder;
- :class:`Checkpointer`: resumable checkpoints ``<out>/checkpoints/step-NNNNNN/``
  with the policy (model or adapter), ``head.safetensors``, ``optimizer.pt``
  (loaded back with ``weights_only=True``) and ``state.json``; ``LATEST`` names the
  newest, written last so that a killed run resumes from a complete checkpoint.
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
