"""What the trainable LLM baselines (Prompt4NR, R2ec) share: train-instance sampling, held-out NDCG@10,
resumable checkpoints in safetensors, the best state kept in memory, and a CSV log.

Checkpoints (``<folder>/trainable.safetensors``, ``optimizer.safetensors``, ``state.json``)
hold only the parameters that train (LoRA matrices, new token rows, or everything for
full fine-tuning) and the AdamW moments, all as safetensors: nothing is pickled, and a
resumed run continues exactly where the checkpoint was taken. ``LATEST`` names the
newest complete checkpoint and is written last.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from r2bench.atomic import atomic_path, write_json, write_text

log = logging.getLogger(__name__)


def sample_train_rows(benchmark, max_instances: int, seed: int, tag: str) -> list[dict[str, Any]]:
    """A seeded sample of ``max_instances`` train instances (0 = all), in the sampled order."""
    from r2bench.stablehash import stable_rng

    rows = benchmark.split("train").sort("instance_id").to_dicts()
    order = stable_rng(seed, tag).permutation(len(rows))
    if max_instances:
        order = order[:max_instances]
    return [rows[i] for i in order.tolist()]


def held_out_rows(benchmark, split: str, n: int) -> list[dict[str, Any]]:
    """The first ``n`` instances of ``split`` by instance id (0 = all of them)."""
    df = benchmark.split(split).sort("instance_id")
    return (df.head(n) if n else df).to_dicts()


def mean_ndcg10(scores: np.ndarray, rows: list[dict[str, Any]]) -> float:
    from r2bench.eval.metrics import per_instance_metrics

    if not rows:
        return float("nan")
    target = np.array([int(r["target_index"]) for r in rows])
    return float(per_instance_metrics(np.asarray(scores, dtype=np.float64), target, ["ndcg@10"])["ndcg@10"].mean())


def trainable_state(model) -> dict[str, Any]:
    """A detached CPU copy of every parameter that trains, by name."""
    return {n: p.detach().to("cpu", copy=True).contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model, state: dict[str, Any]) -> None:
    """Copy ``state`` (from :func:`trainable_state`) back into the model; every name must exist."""
    import torch

    params = dict(model.named_parameters())
    missing = [n for n in state if n not in params]
    if missing:
        from r2bench.errors import R2BenchError

        raise R2BenchError(f"checkpoint does not fit the model: no parameter {missing[0]!r} "
                           f"({len(missing)} missing)")
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t.to(params[n].device, params[n].dtype))


def _optimizer_tensors(optimizer) -> tuple[dict[str, Any], dict[str, Any]]:
    """AdamW's state as flat tensors ``{"<param index>.<key>": tensor}`` plus the JSON-able rest."""
    import torch

    sd = optimizer.state_dict()
    tensors, meta = {}, {"param_groups": sd["param_groups"], "scalars": {}}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"{idx}.{key}"] = val.detach().cpu().contiguous()
            else:
                meta["scalars"][f"{idx}.{key}"] = val
    return tensors, meta


def _load_optimizer(optimizer, tensors: dict[str, Any], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, t in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = t
    for name, v in meta["scalars"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


class Checkpoints:
    """``<root>/checkpoints/<name>/`` with the trainable weights, the optimizer and a JSON state; ``LATEST`` last."""

    def __init__(self, root: str | Path, keep: int = 2):
        self.root = Path(root) / "checkpoints"
        self.keep = keep

    def latest(self) -> Path | None:
        f = self.root / "LATEST"
        if not f.is_file():
            return None
        d = self.root / f.read_text().strip()
        return d if (d / "state.json").is_file() else None

    def save(self, name: str, model, optimizer, state: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
        """Write checkpoint ``name``; ``extra`` holds further named tensors (e.g. the best state so far)."""
        from safetensors.torch import save_file

        target = self.root / name
        with atomic_path(target) as tmp:
            tmp.mkdir(parents=True)
            save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
            tensors, meta = _optimizer_tensors(optimizer)
            save_file(tensors, str(tmp / "optimizer.safetensors"))
            write_json(tmp / "optimizer.json", meta)
            for key, tens in (extra or {}).items():
                save_file({k: v.contiguous() for k, v in tens.items()}, str(tmp / f"{key}.safetensors"))
            write_json(tmp / "state.json", state)
        write_text(self.root / "LATEST", name)
        olds = sorted(d for d in self.root.iterdir() if d.is_dir() and d.name != name)
        for d in olds[: max(0, len(olds) - (self.keep - 1))]:
            shutil.rmtree(d, ignore_errors=True)
        return target

    @staticmethod
    def load(folder: Path, model, optimizer) -> dict[str, Any]:
        """Restore the weights and the optimizer from ``folder``; returns its state."""
        from safetensors.torch import load_file

        load_trainable_state(model, load_file(str(folder / "trainable.safetensors")))
        _load_optimizer(optimizer, load_file(str(folder / "optimizer.safetensors")),
                        json.loads((folder / "optimizer.json").read_text()))
        return json.loads((folder / "state.json").read_text())

    @staticmethod
    def load_extra(folder: Path, key: str) -> dict[str, Any] | None:
        from safetensors.torch import load_file

        f = folder / f"{key}.safetensors"
        return load_file(str(f)) if f.is_file() else None


class CSVLog:
    """Append-only CSV of dict rows (header once); :meth:`truncate_after` drops rows a resumed run redoes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, row: dict[str, Any]) -> None:
        new = not self.path.is_file() or self.path.stat().st_size == 0
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)

    def truncate_after(self, step: int, key: str = "step") -> None:
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


def set_threads(n: int) -> None:
    if n > 0:
        import torch

        torch.set_num_threads(int(n))


def lora_config(settings: Any, **extra: Any) -> Any:
    """A ``peft.LoraConfig`` from a config's ``lora_r``, ``lora_alpha``, ``lora_dropout`` and ``lora_targets``
    ("all-linear" or a comma list); ``extra`` goes to ``LoraConfig`` (e.g. ``trainable_token_indices``)."""
    from r2bench.extras import require

    peft = require("peft", purpose="LoRA training")
    targets: Any = settings.lora_targets
    if targets != "all-linear":
        targets = [t.strip() for t in str(targets).split(",") if t.strip()]
    return peft.LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                           target_modules=targets, task_type="CAUSAL_LM", **extra)
