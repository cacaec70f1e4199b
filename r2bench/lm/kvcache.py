"""The KV-cache layout shared by R2Rank's inference and training passes.

The K prompts of an instance differ only in the candidate, which the template puts
last. The longest common prefix of their token ids (so the split is exact by
construction, whatever the tokenizer does at the boundary) is encoded ONCE and its KV
cache copied for the K continuations.

Layout of every batched forward (``forward_rows``): ``[prefix cache | left padding |
real suffix tokens]``. The 2-D attention mask is 1 over the prefix, 0 over the padding,
1 over the real tokens; position ids are ``cumsum(mask) - 1``, so the suffix of every
row continues at its prefix length exactly as it would without padding, and every
row's last real token sits in the last column. An empty prefix scores full prompts.

Several instances at once (``encode_prefixes`` + ``rows_state``): the prefixes of a
group of instances (of different lengths) are encoded together, left-padded to one
width with the mask 0 on the padding, and every row selects its instance's prefix
cache (``DynamicCache.batch_select_indices``); positions follow the mask, so each row
still continues at its own prefix length. One instance alone is encoded at batch 1
without padding and repeated (``batch_repeat_interleave``).

Every tensor is created on the model's device (``model_device``).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


def common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    """Longest common prefix of token-id lists, leaving at least one token in every suffix."""
    if not seqs:
        return 0
    n = min(len(s) for s in seqs) - 1
    first = seqs[0]
    for i in range(max(n, 0)):
        t = first[i]
        if any(s[i] != t for s in seqs):
            return i
    return max(n, 0)


def model_device(model: Any) -> torch.device:
    """The device of the model's output embeddings (where the logits, and so every new tensor, live)."""
    return model.get_output_embeddings().weight.device


def cache_kw(model: Any) -> str:
    """``cache`` (transformers >= 5.x) or ``past_key_values`` (older), whichever forward takes."""
    decoder = model.get_decoder()
    params = inspect.signature(decoder.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _out_cache(out: Any) -> Any:
    return getattr(out, "cache", None) if getattr(out, "cache", None) is not None else out.past_key_values


def new_cache(model: Any) -> Any:
    """An empty ``DynamicCache`` for ``model`` (whatever the transformers version's constructor takes)."""
    from transformers import DynamicCache

    try:
        return DynamicCache(config=model.config)
    except TypeError:
        return DynamicCache()


def expand_cache(cache: Any, n: int) -> Any:
    new = copy.deepcopy(cache)
    if n > 1:
        new.batch_repeat_interleave(n)
    return new


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int, device: Any, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)`` of token rows padded to one width (at least 1), on the left or on the right."""
    width = max(1, max((len(r) for r in rows), default=1))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if not r:
            continue
        cols = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, cols] = torch.tensor(list(r), dtype=torch.long)
        mask[i, cols] = 1
    return ids.to(device), mask.to(device)


@dataclass
class RowBatch:
    """Running state of a batch on top of a (possibly empty) prefix cache."""

    cache: Any
    mask: torch.Tensor  # [n, cache_len]


def pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


@torch.no_grad()
def encode_prefix(model: Any, prefix_ids: Sequence[int]) -> Any:
    """KV cache of the shared prefix (batch 1), or None for an empty prefix."""
    if not prefix_ids:
        return None
    ids = torch.tensor([list(prefix_ids)], dtype=torch.long, device=model_device(model))
    cache = new_cache(model)
    model.get_decoder()(input_ids=ids, use_cache=True, **{cache_kw(model): cache})
    return cache


@dataclass
class Prefixes:
    """The encoded prefixes of a group of instances: cache ``[n, P]`` (None when every prefix is empty)
    and mask ``[n, P]`` (left padding 0)."""

    cache: Any
    mask: torch.Tensor


@torch.no_grad()
def encode_prefixes(model: Any, prefixes: Sequence[Sequence[int]], pad_id: int = 0) -> Prefixes:
    """Encode several instances' prefixes in one forward pass (left-padded; one alone: batch 1, no padding)."""
    dev = model_device(model)
    n, width = len(prefixes), max((len(p) for p in prefixes), default=0)
    if width == 0:
        return Prefixes(None, torch.zeros((n, 0), dtype=torch.long, device=dev))
    if n == 1:
        return Prefixes(encode_prefix(model, prefixes[0]), torch.ones((1, width), dtype=torch.long, device=dev))
    ids, mask = pad_rows(prefixes, pad_id, dev, left=True)
    cache = new_cache(model)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    model.get_decoder()(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                        **{cache_kw(model): cache})
    return Prefixes(cache, mask)


def rows_state(model: Any, pre: Prefixes, inst_of_row: Sequence[int]) -> RowBatch:
    """A batch whose row ``r`` continues the prefix of instance ``inst_of_row[r]`` (a copy of its cache)."""
    dev = model_device(model)
    idx = torch.tensor(list(inst_of_row), dtype=torch.long, device=dev)
    if pre.cache is None:
        return RowBatch(cache=new_cache(model), mask=torch.zeros((len(idx), 0), dtype=torch.long, device=dev))
    if pre.mask.shape[0] == 1:
        cache = expand_cache(pre.cache, len(idx))
    else:
        cache = copy.deepcopy(pre.cache)
        cache.batch_select_indices(idx)
    return RowBatch(cache=cache, mask=pre.mask[idx])


def forward_rows(model: Any, state: RowBatch, ids: torch.Tensor, mask_new: torch.Tensor) -> torch.Tensor:
    """Run new tokens ``ids`` [n, t] on the cache; returns last-layer hidden states [n, t, H]."""
    mask = torch.cat([state.mask, mask_new], dim=1)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1]:]
    out = model.get_decoder()(
        input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **{cache_kw(model): state.cache}
    )
    state.cache = _out_cache(out)
    state.mask = mask
    return out.last_hidden_state


def start_rows(model: Any, prefix_cache: Any, prefix_len: int, n: int) -> RowBatch:
    dev = model_device(model)
    cache = expand_cache(prefix_cache, n) if prefix_cache is not None else new_cache(model)
    return RowBatch(cache=cache, mask=torch.ones((n, prefix_len), dtype=torch.long, device=dev))
