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
    #: Adam learning rate
    learning_rate: float = 0.001
    #: Adam weight decay
    weight_decay: float = 0.0
    #: training examples per optimiser step (RecBole's stock value is 2048)
    train_batch_size: int = 512
    #: rows per ``full_sort_predict`` call when scoring val and test instances
    eval_batch_size: int = 256
    #: most training epochs; the epoch kept is the one with the best val NDCG@10
    epochs: int = 8
    #: epochs without a better val NDCG@10 before training stops
    patience: int = 2
    threads: int = 0  # torch threads; 0: min(2, cpu count), or 1 when the machine is already busy
    #: train and score on CUDA
    use_gpu: bool = False
    anomaly_mode: bool = False  # True reproduces stock RecBole (slow); bench only
    recbole: dict = field(default_factory=dict)  # extra RecBole settings, passed verbatim


@dataclass
class _TransformerConfig(_TrainConfig):
    #: width of the item embeddings and of the transformer layers
    hidden_size: int = 64
    #: width of the feed-forward layer inside each transformer layer
    inner_size: int = 256
    #: transformer layers
    n_layers: int = 2
    #: attention heads per layer
    n_heads: int = 2
    #: dropout on the hidden states (RecBole's stock value is 0.5)
    hidden_dropout_prob: float = 0.2
    #: dropout on the attention weights (RecBole's stock value is 0.5)
    attn_dropout_prob: float = 0.2
    #: history items the model sees: the benchmark's history length (RecBole's stock value is 50)
    max_seq_length: int = 20
    #: ``CE`` (softmax over all items) or ``BPR`` (one sampled negative)
    loss_type: str = "CE"


@dataclass
class SASRecConfig(_TransformerConfig):
    pass


@dataclass
class BERT4RecConfig(_TransformerConfig):
    #: probability that each item of a training sequence is masked
    mask_ratio: float = 0.2
    #: probability that a training batch masks only the last item (next-item fine-tuning) instead
    ft_ratio: float = 0.5


@dataclass
class LightGCNConfig(_TrainConfig):
    #: width of the user and item embeddings
    embedding_size: int = 64
    #: graph convolution layers
    n_layers: int = 2
    #: L2 regularisation of the embeddings in the BPR loss (RecBole's stock value is 1e-5)
    reg_weight: float = 1e-4
    learning_rate: float = 0.002
    train_batch_size: int = 2048
    epochs: int = 60
    patience: int = 5



def load_yaml_defaults(method: str) -> dict[str, Any]:
    """The documented defaults of ``method`` (``sasrec``, ``bert4rec``, ``lightgcn``)."""
    from r2bench.config import load_yaml_config

    return load_yaml_config(CONFIG_DIR / f"{method}.yaml")
