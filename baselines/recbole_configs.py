"""Typed configs of the RecBole baselines, mirroring ``baselines/configs/*.yaml``.

The YAML files are the documented defaults; these dataclasses mirror them field by
field (``tests/baselines/test_recbole.py`` checks they agree). Kept apart from the
adapter so the configs can be read without the adapter's machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).with_name("configs")


@dataclass
class _TrainConfig:
    learning_rate: float = 0.001
    weight_decay: float = 0.0
    train_batch_size: int = 512
    eval_batch_size: int = 256
    epochs: int = 8
    patience: int = 2
    threads: int = 0  # 0: min(2, cpu count)
    use_gpu: bool = False
    anomaly_mode: bool = False  # True reproduces stock RecBole (slow); bench only
    recbole: dict = field(default_factory=dict)  # extra RecBole settings, passed verbatim


@dataclass
class _TransformerConfig(_TrainConfig):
    hidden_size: int = 64
    inner_size: int = 256
    n_layers: int = 2
    n_heads: int = 2
    hidden_dropout_prob: float = 0.2
    attn_dropout_prob: float = 0.2
    max_seq_length: int = 20
    loss_type: str = "CE"


@dataclass
class SASRecConfig(_TransformerConfig):
    pass


@dataclass
class BERT4RecConfig(_TransformerConfig):
    mask_ratio: float = 0.2
    ft_ratio: float = 0.5


@dataclass
class LightGCNConfig(_TrainConfig):
    embedding_size: int = 64
    n_layers: int = 2
    reg_weight: float = 1e-4
    learning_rate: float = 0.002
    train_batch_size: int = 2048
    epochs: int = 60
    patience: int = 5



def load_yaml_defaults(method: str) -> dict[str, Any]:
    """The documented defaults of ``method`` (``sasrec``, ``bert4rec``, ``lightgcn``)."""
    from r2bench.config import load_yaml_config

    return load_yaml_config(CONFIG_DIR / f"{method}.yaml")
