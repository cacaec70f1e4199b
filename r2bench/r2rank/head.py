"""The R2Rank scoring head f_phi and the zero-shot decision margin.

``ScoringHead`` is a small MLP (LayerNorm -> Linear -> GELU -> Linear -> 1) on the
backbone's last-layer hidden state at the **decision position**: the last token of
``prompt + reasoning body + "<answer>"`` (see ``r2bench.r2rank.inference``). The same
position serves the untrained fallback, so a head and the zero-shot margin look at
exactly the same place whether or not the reasoning finished.

Zero-shot margin (no trained head): the log-probability of the answer continuation
``Recommend`` minus that of ``Not Recommend`` after ``...<answer>``, each summed over
its tokens (the two strings tokenize to different lengths, so single-token logits
would compare the wrong things). It is the log-odds of the two decisions under the LM.

A head is stored as one safetensors file (``head.safetensors`` by default) whose
metadata carries its shape; ``find_head`` looks for it next to the adapter or the
backbone when the config says ``head=auto``.
"""

from __future__ import annotations

import json
from pathlib import Path
import torch
from torch import nn

from r2bench.errors import R2BenchError

HEAD_FILE = "head.safetensors"
HEAD_FORMAT = "r2bench.head/1"


class ScoringHead(nn.Module):
    """f_phi: hidden state [..., H] -> score [...]."""

    def __init__(self, hidden_size: int, inner_size: int = 256, dropout: float = 0.0):
        super().__init__()
        self.hidden_size = int(hidden_size)
        self.inner_size = int(inner_size)
        self.dropout = float(dropout)
        self.net = nn.Sequential(
            nn.LayerNorm(self.hidden_size),
            nn.Linear(self.hidden_size, self.inner_size),
            nn.GELU(),
            nn.Dropout(self.dropout),
            nn.Linear(self.inner_size, 1),
        )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.net(hidden.to(self.net[1].weight.dtype)).squeeze(-1)

    def save(self, path: str | Path, state: dict[str, torch.Tensor] | None = None) -> Path:
        """Write the head as safetensors (atomically); a folder gets ``head.safetensors`` inside.

        ``state``: the head's full state dict where a distributed engine shards the module (FSDP);
        None = the module's own ``state_dict()``."""
        from safetensors.torch import save_file

        from r2bench.atomic import atomic_path

        path = Path(path)
        if path.suffix != ".safetensors":
            path = path / HEAD_FILE
        meta = {"format": HEAD_FORMAT, "config": json.dumps(
            {"hidden_size": self.hidden_size, "inner_size": self.inner_size, "dropout": self.dropout})}
        state = {k: v.detach().contiguous().cpu() for k, v in (state if state is not None else self.state_dict()).items()}
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "ScoringHead":
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path)
        if path.is_dir():
            path = path / HEAD_FILE
        if not path.is_file():
            raise R2BenchError(f"scoring head not found: {path}")
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != HEAD_FORMAT:
            raise R2BenchError(f"{path}: not an r2bench scoring head (metadata format {meta.get('format')!r})")
        head = cls(**json.loads(meta["config"]))
        head.load_state_dict(load_file(str(path)))
        return head.to(device).eval()


def find_head(spec: str | None, *folders: str | Path | None) -> Path | None:
    """Resolve the ``head`` config: ``none`` -> None (zero-shot), a path, or ``auto`` (next to adapter/backbone)."""
    if spec is None or spec.lower() in ("", "none", "zero-shot", "zeroshot"):
        return None
    if spec.lower() == "auto":
        for folder in folders:
            if folder and (Path(folder) / HEAD_FILE).is_file():
                return Path(folder) / HEAD_FILE
        return None
    p = Path(spec).expanduser()
    if p.is_dir():
        p = p / HEAD_FILE
    if not p.is_file():
        raise R2BenchError(f"head {spec!r}: no such file {p}")
    return p
