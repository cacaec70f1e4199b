"""The decision step of R2Rank: hidden state, zero-shot margin and score at the decision position.

The decision position is the last token of ``prompt + reasoning body + <answer>``, the
body being the reasoning cut before its last ``<answer>`` (kept whole when it has none:
unfinished or malformed), so every candidate, finished or not, gets a score. ``decide``
feeds each row's tail (ending with ``<answer>``) on a cache and reads there the
last-layer hidden state (for the head) and the log-probabilities of ``Recommend`` /
``Not Recommend`` (multi-token strings through one more short forward, then ``crop``).
``score_decisions`` / ``decision_hidden_states`` / ``zero_shot_margin`` do it from
explicit token rows (training code, tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from r2bench.lm.generation import answer_token_ids, decision_body
from r2bench.lm.kvcache import RowBatch, forward_rows, model_device, new_cache, pad_id, pad_rows, start_rows


def decision_suffixes(tokenizer: Any, suffixes: Sequence[Sequence[int]], reasonings: Sequence[Any]) -> list[list[int]]:
    """Per candidate: prompt suffix + reasoning body + ``<answer>`` (the decision position is the last token)."""
    open_ids = answer_token_ids(tokenizer)["open"]
    return [list(s) + decision_body(tokenizer, r.token_ids) + open_ids for s, r in zip(suffixes, reasonings)]


def decision_hidden_states(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, cache: Any = None
) -> torch.Tensor:
    """Last-layer hidden state at each row's last real token, for left- or right-padded rows.

    ``attention_mask`` covers ``cache`` (if any) + ``input_ids``; positions follow the mask.
    Gradients flow when called outside ``no_grad`` (the training code uses that).
    """
    n, t = input_ids.shape
    past = attention_mask[:, : attention_mask.shape[1] - t]
    state = RowBatch(cache=cache if cache is not None else new_cache(model), mask=past)
    hidden = forward_rows(model, state, input_ids, attention_mask[:, -t:])
    new_mask = attention_mask[:, -t:]
    last = t - 1 - new_mask.flip(-1).argmax(-1)
    return hidden[torch.arange(n, device=hidden.device), last]


def decide(model: Any, tokenizer: Any, state: RowBatch, tails: Sequence[Sequence[int]], head: Any):
    """Feed each row's tail (ending with ``<answer>``) and read hidden state, margin, score there."""
    dev = model_device(model)
    lm_head = model.get_output_embeddings()
    n = len(tails)
    ids, mask_new = pad_rows(tails, pad_id(tokenizer), dev, left=True)
    hidden = forward_rows(model, state, ids, mask_new)[:, -1]
    first = torch.log_softmax(lm_head(hidden).float(), -1)
    ans = answer_token_ids(tokenizer)
    lps = []
    for key in ("recommend", "not_recommend"):
        cont = ans[key]
        lp = first[:, cont[0]].clone()
        if len(cont) > 1:
            c_ids = torch.tensor([cont[:-1]] * n, dtype=torch.long, device=dev)
            h = forward_rows(model, state, c_ids, torch.ones_like(c_ids))
            lp_rest = torch.log_softmax(lm_head(h).float(), -1)
            tgt = torch.tensor(cont[1:], dtype=torch.long, device=dev)
            lp = lp + lp_rest.gather(-1, tgt.expand(n, -1).unsqueeze(-1)).squeeze(-1).sum(-1)
            state.cache.crop(-(len(cont) - 1))
            state.mask = state.mask[:, : -(len(cont) - 1)]
        lps.append(lp)
    margin = lps[0] - lps[1]
    score = head(hidden.float()).float() if head is not None else margin
    return hidden, margin, score


@torch.no_grad()
def score_decisions(
    model: Any,
    tokenizer: Any,
    decision_rows: Sequence[Sequence[int]],
    *,
    prefix: tuple[int, Any] = (0, None),
    head: Any = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hidden states [n, H], zero-shot margins [n] and scores [n] (head, or the margin) at the decision position.

    ``decision_rows``: token ids after the prefix, each ending with ``<answer>``.
    """
    p, pcache = prefix
    state = start_rows(model, pcache, p, len(decision_rows))
    return decide(model, tokenizer, state, decision_rows, head)


def zero_shot_margin(model: Any, tokenizer: Any, decision_rows: Sequence[Sequence[int]]) -> torch.Tensor:
    """logP(Recommend) - logP(Not Recommend) after each full token sequence (which ends with ``<answer>``)."""
    return score_decisions(model, tokenizer, decision_rows)[1]
