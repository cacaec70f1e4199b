"""How many instances to decode together (``instances_per_batch=0``, the default: automatic).

On a CPU: 1. Batching instances saves no arithmetic there (the cost is the tokens, and
the shared prefix is already encoded once per instance), while it multiplies the memory
of the KV cache.

On a GPU: as many as fit. A decoding batch of ``n`` instances with ``K`` candidates
each holds, per row, a copy of its instance's prefix cache plus the suffix and the
generated tokens, so the KV cache costs about

    n * K * (prompt_tokens + max_new_tokens) * kv_bytes_per_token,
    kv_bytes_per_token = 2 (K and V) * layers * kv_heads * head_dim * bytes per element,

plus the per-step logits (``n * K * vocab`` floats, a few copies when sampling with
top-p). The automatic value spends half of the free CUDA memory
(``torch.cuda.mem_get_info``) on that estimate, leaving the rest for activations,
allocator fragmentation and, with ``generator=openai``, a serving engine on the same
GPU; it is capped at 256 and at the number of instances to score. For a
Qwen2.5-0.5B-shaped model (24 layers, 2 KV heads of 64, bf16: 12 KiB per token) with
1,000-token prompts, 512 reasoning tokens, 20 candidates and a 152k vocabulary, one
instance costs about 0.42 GB (0.37 GB of it KV cache), so a GPU with 70 GB free takes
about 80 instances per batch.
"""

from __future__ import annotations

from typing import Any

#: share of the free device memory the automatic value plans to fill
MEMORY_SHARE = 0.5
MAX_AUTO = 256


def kv_bytes_per_token(model: Any) -> int:
    """Bytes of KV cache one token costs in ``model`` (all layers, keys and values)."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    layers = int(cfg.num_hidden_layers)
    heads = int(cfg.num_attention_heads)
    kv_heads = int(getattr(cfg, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
    elem = next(model.parameters()).element_size()
    return 2 * layers * kv_heads * head_dim * elem


def instance_bytes(model: Any, prompt_tokens: int, rows: int, max_new_tokens: int) -> int:
    """Estimated peak bytes one instance adds to a decoding batch (KV cache + logits)."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    vocab = int(cfg.vocab_size)
    per_row = kv_bytes_per_token(model) * (int(prompt_tokens) + int(max_new_tokens) + 8) + 16 * vocab
    return rows * per_row


def auto_instances_per_batch(model: Any, prompt_tokens: int, rows: int, max_new_tokens: int,
                             n_instances: int, requested: int = 0) -> int:
    """``requested`` when > 0, else 1 on CPU and the estimate above on CUDA (at least 1)."""
    if requested and requested > 0:
        return int(requested)
    import torch

    dev = next(model.parameters()).device
    if dev.type != "cuda":
        return 1
    free, _ = torch.cuda.mem_get_info(dev)
    per = max(1, instance_bytes(model, prompt_tokens, rows, max_new_tokens))
    return int(max(1, min(MAX_AUTO, max(n_instances, 1), (MEMORY_SHARE * free) // per)))
