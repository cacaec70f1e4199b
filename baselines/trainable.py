"""What the trainable LLM baselines (Prompt4NR, R2ec) share: train-instance sampling, held-out NDCG@10,
resumable checkpoints in safetensors (on :class:`r2bench.lm.checkpoints.CheckpointDir`) and the best state kept
in memory; the CSV log is :class:`r2bench.lm.checkpoints.CSVLog`, as for the other trainers.

Checkpoints (``<folder>/trainable.safetensors``, ``optimizer.safetensors``, ``state.json``)
hold only the parameters that train (LoRA matrices, new token rows, or everything for
full fine-tuning) and the AdamW moments, all as safetensors: nothing is pickled, and a
resumed run continues exactly where the checkpoint was taken. ``LATEST`` names the
newest complete checkpoint and is written last.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from r2bench.atomic import atomic_path, write_json
from r2bench.lm.checkpoints import CheckpointDir

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


class Checkpoints(CheckpointDir):
    """``<root>/checkpoints/<name>/`` with the trainable weights, the optimizer and a JSON state; ``LATEST`` last."""

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
        self.mark_latest(name)
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
