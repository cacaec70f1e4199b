"""Typed configs of R2Rank training: SFT data synthesis, SFT, RL (Algorithm 1), the frozen-feature head.

Each is a dataclass with defaults, filled by :func:`r2bench.config.build_config`
from ``--config file.yaml`` and ``--set key=value``. Defaults are sized for a
CPU and the offline SmolLM2-135M backbone; the GPU recipe for Qwen2.5-1.5B/3B is
in the README (r2rank-training section).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from r2bench.lm.backbones import LoRASettings
from r2bench.llm.config import ClientConfig

Variant = Literal["sft+rl", "rl-only", "mlp-only", "no-cot"]


@dataclass
class SynthesizeConfig(ClientConfig):
    """Teacher-generated self-reflective responses for SFT (paper section 3.4).

    The teacher is any OpenAI-compatible endpoint (DeepSeek-R1 in the paper), reached
    through ``r2bench.llm`` (its settings are inherited: base_url, model, api_key_env,
    concurrency, retries, cache, prices). Answers are cached, so an interrupted run
    resumes without asking twice.
    """

    model: str = "deepseek-reasoner"
    temperature: float = 0.6
    max_tokens: int = 2048
    #: train instances to use (a seeded sample; 0 = all)
    max_instances: int = 200
    #: sampled negatives per positive (the positive and this many negatives of each instance)
    negatives_per_positive: int = 1
    #: a JSONL file of teacher answers ({"instance_id", "item_id", "text"}) used instead of the API
    responses_file: str | None = None
    no_cot: bool = False
    #: responses sampled per (instance, item) pair (each with its own request seed; all that match the label are kept)
    samples_per_pair: int = 1
    #: constrain the teacher to the three-part Figure 2 response: none (a real teacher such as DeepSeek-R1) |
    #: regex (sent as vLLM's ``structured_outputs``: the offline stand-in teacher, e.g. a served SmolLM2)
    structured_output: Literal["none", "regex"] = "none"
    #: with structured_output=regex: the characters each of the three parts may take (min-max)
    section_chars: str = "20-400"


@dataclass
class SFTConfig(LoRASettings):
    """Supervised fine-tuning on the kept teacher responses (loss on assistant tokens only)."""

    backbone: str = "smollm2-135m"
    epochs: int = 1
    batch_size: int = 4
    lr: float = 2e-5
    weight_decay: float = 0.0
    max_length: int = 1536
    grad_clip: float = 1.0
    checkpoint_every: int = 50
    device: str = "auto"
    dtype: str = "auto"


@dataclass
class RLConfig(LoRASettings, ClientConfig):
    """End-to-end RL under the Plackett-Luce surrogate (Algorithm 1).

    The LLM client's settings (``base_url``, ``model``, ``concurrency``, ``cache``...) are
    used only by ``generator=openai`` (``mlp-only`` rollouts from a serving engine).
    """

    #: backbone name or folder; for ``sft+rl`` the SFT output folder
    backbone: str = "smollm2-135m"
    #: a scoring head (safetensors) to start from; none = a fresh head
    head: str | None = None
    variant: Variant = "rl-only"
    steps: int = 50
    #: train instances to draw steps from: all | last-per-user | sample:N | last-per-user:N
    #: (``r2bench.r2rank.instances``)
    train_instances: str = "all"
    #: instances (users x 20 candidates) per RL step: the global batch, shared out by user over the processes
    instances_per_step: int = 2
    #: rankings sampled from Plackett-Luce per instance (the paper samples one)
    ranking_samples: int = 4
    #: REINFORCE baseline over the ranking samples of an instance: none (paper) | mean | loo
    baseline: Literal["none", "mean", "loo"] = "none"
    #: baseline of the PPO advantage rho: none (paper) | batch-mean (deviation)
    ppo_baseline: Literal["none", "batch-mean"] = "none"
    #: optimisation epochs per rollout batch (>1 so that the PPO clipping acts)
    ppo_epochs: int = 2
    clip_eps: float = 0.2
    ppo_reduction: Literal["sum", "token-mean", "seq-mean"] = "token-mean"
    #: also send the REINFORCE gradient of log P(tau|s) into the LLM through the hidden
    #: state the head reads (the paper's "via s_k"); the PPO term always trains theta
    pl_grad_to_backbone: bool = True
    lr_policy: float = 1e-5
    lr_head: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    reward_k: int = 10
    max_reasoning_tokens: int = 48
    temperature: float = 1.0
    top_p: float | None = None
    #: candidates per forward pass in the optimisation and the old-log-prob pass (memory knob; the same result
    #: up to float rounding; each pass re-encodes the shared prefix)
    micro_batch: int = 20
    #: instances decoded together in rollouts and evaluation (0 = automatic: 1 on CPU, as many as fit on a GPU)
    instances_per_batch: int = 0
    #: who writes the reasonings: the policy itself (hf), or, for mlp-only (frozen LLM), an OpenAI-compatible
    #: completions endpoint serving the same backbone (openai; decision states computed locally)
    generator: Literal["hf", "openai"] = "hf"
    #: generator=openai: send prompt token ids and read generated ids (vLLM) instead of text
    server_token_ids: bool = False
    #: encode the instance's common prompt prefix once per forward pass and reuse its KV cache
    #: (same result; false runs all rows in full, for comparison: ``bench/r2rank_rl_step.py``)
    shared_prefix: bool = True
    head_hidden: int = 256
    eval_every: int = 10
    eval_instances: int = 16
    eval_split: Literal["train", "val", "test"] = "val"
    checkpoint_every: int = 10
    device: str = "auto"
    dtype: str = "auto"
    #: TensorBoard logging next to the CSV when tensorboard is installed
    tensorboard: bool = False


@dataclass
class FeatureConfig:
    """Frozen-LLM decision states cached once (``r2bench r2rank features``; ``r2bench.r2rank.features``).

    The states are read as ``r2bench run --method r2rank`` reads them with the same
    backbone/adapter/no_cot/max_reasoning_tokens: train states from ``samples`` sampled
    reasonings per candidate (CoT; no-cot has one deterministic state), held-out states
    from greedy reasonings, as at test time.
    """

    backbone: str = "smollm2-135m"
    adapter: str | None = None
    #: the decision-only prompt (no reasoning is generated)
    no_cot: bool = False
    max_reasoning_tokens: int = 64
    #: sampled reasonings cached per train candidate (CoT only)
    samples: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    #: all | last-per-user | sample:N | last-per-user:N (``r2bench.r2rank.instances``)
    train_instances: str = "last-per-user"
    eval_split: Literal["train", "val", "test"] = "val"
    #: held-out instances (a seeded sample; 0 = the whole split)
    eval_instances: int = 0
    #: instances per safetensors shard (the unit of resumption)
    shard_size: int = 32
    #: where the caches live (default: <out>/features); several head runs may share one
    features_dir: str | None = None
    batch_size: int = 20
    shared_prefix: bool = True
    device: str = "auto"
    dtype: str = "auto"
    attn_implementation: str = "sdpa"
    #: torch CPU threads (0 = torch's default)
    threads: int = 0


@dataclass
class HeadTrainConfig(FeatureConfig):
    """The scoring head trained on cached frozen states (``r2bench r2rank head``; ``r2bench.r2rank.head_training``).

    ``objective=reinforce``: the paper's REINFORCE under the Plackett-Luce surrogate
    (Eq. 5) with ``ranking_samples`` rankings per instance and the RL baselines;
    ``listwise-ce``: a supervised probe (softmax cross-entropy over the K scores, the
    target as the label). Held-out NDCG@10 is measured after every epoch; training
    stops after ``patience`` epochs without improvement and keeps the best head.
    """

    objective: Literal["reinforce", "listwise-ce"] = "reinforce"
    epochs: int = 300
    patience: int = 20
    #: an epoch counts as an improvement when held-out NDCG@10 rises by more than this
    min_delta: float = 0.0
    instances_per_step: int = 16
    ranking_samples: int = 4
    baseline: Literal["none", "mean", "loo"] = "none"
    reward_k: int = 10
    lr_head: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    head_hidden: int = 256
    head_dropout: float = 0.0
