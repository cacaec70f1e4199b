"""Training-time forward passes that encode an instance's shared prompt prefix once.

The 20 prompts of an instance (R2Rank's, TALLRec's) share everything up to the
candidate: the instructions and the whole user context, about nine tenths of their
tokens on MovieLens. Inference already encodes that prefix once
(``r2bench.lm.kvcache``); this module does the same for the passes that need
gradients (RL's policy forward, TALLRec's fit) and for batched scoring:

1. the prefix runs once, at batch size 1, into a fresh KV cache;
2. the cache is repeated for the ``n`` rows (``batch_repeat_interleave``, i.e.
   ``repeat_interleave``, which is differentiable: the gradients of all rows flow
   back, summed, into the one prefix pass);
3. only the rows' own tokens run, with an attention mask that is 1 over the prefix
   and position ids that continue from it.

The result equals the full forward pass of ``prefix + row`` for every row, up to
float rounding (tested for values and gradients); the cost falls from
``n x (prefix + row)`` tokens to ``prefix + n x row``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from r2bench.lm.kvcache import cache_kw, common_prefix_len, new_cache, pad_rows

__all__ = ["pad_rows", "prefix_forward", "split_prefix"]


def prefix_forward(model: Any, prefix_ids: Sequence[int] | torch.Tensor, ids: torch.Tensor,
                   attention_mask: torch.Tensor) -> torch.Tensor:
    """Last-layer hidden states ``[n, W, H]`` of the rows ``ids [n, W]`` that continue ``prefix_ids`` (a list or a 1-D tensor).

    ``attention_mask [n, W]`` covers the rows only (padding anywhere in a row is 0);
    an empty prefix runs the rows alone. Gradients flow when called outside ``no_grad``.
    """
    decoder = model.get_decoder()
    n = ids.shape[0]
    p = len(prefix_ids)
    if p == 0:
        pos = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
        return decoder(input_ids=ids, attention_mask=attention_mask, position_ids=pos, use_cache=False).last_hidden_state
    kw = cache_kw(model)
    cache = new_cache(model)
    if isinstance(prefix_ids, torch.Tensor):
        prefix = prefix_ids.reshape(1, -1).to(device=ids.device, dtype=torch.long)
    else:
        prefix = torch.tensor([list(prefix_ids)], dtype=torch.long, device=ids.device)
    decoder(input_ids=prefix, use_cache=True, **{kw: cache})
    if n > 1:
        cache.batch_repeat_interleave(n)
    mask = torch.cat([torch.ones((n, p), dtype=attention_mask.dtype, device=ids.device), attention_mask], dim=1)
    pos = (mask.long().cumsum(-1) - 1).clamp_min(0)[:, p:]
    out = decoder(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **{kw: cache})
    return out.last_hidden_state


def split_prefix(seqs: Sequence[Sequence[int]]) -> tuple[list[int], list[list[int]]]:
    """(the longest common prefix of ``seqs``, each sequence's remainder); every remainder keeps >= 1 token."""
    p = common_prefix_len(seqs)
    return (list(seqs[0][:p]) if seqs else []), [list(s[p:]) for s in seqs]
