"""Pointwise R2Rank inference: generation with a shared-prefix KV cache, then the decision.

The K prompts of an instance share everything up to the candidate; that prefix is
encoded once (``r2bench.lm.kvcache``: the layout, several instances at once).

Steps for a batch of rows (``reason_and_decide_instances``; one instance:
``score_prompts``):

1. generation (``r2bench.lm.generation``): greedy (default) or sampled decoding with a
   hand-written loop over the model's forward and the cache; a row stops at ``</answer>``,
   at EOS, or at ``max_new_tokens``; rows that stopped are fed masked pad tokens
   (invisible to everything) until the batch is done;
2. the decision body: the reasoning cut before its last ``<answer>``, then ``<answer>``
   (``r2bench.r2rank.decision``);
3. the decision on the SAME cache: generated tokens after the body are masked out,
   only ``<answer>`` is fed (plus the last body token, never fed during decoding).

Several instances per batch (``instances_per_batch``): the rows of a group of
instances are decoded together, each on its own instance's prefix. ``decide_instances``
does step 3 for reasonings that come from elsewhere (a serving engine): one prefill of
prompt suffix + reasoning body + ``<answer>`` on the shared prefix.

Devices: every tensor is created on the model's device; a sampling generator must be
on it too (``torch.Generator(device=...)``; ``r2bench.lm.generation.check_generator``
says so clearly otherwise).

The model runs with ``use_cache=True``; tests compare this path against scoring each
candidate alone (batch 1, no padding) under both "sdpa" and "eager" attention, and
several instances per batch against one at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from r2bench.lm.generation import (
    Progress,
    Reasoning,
    answer_token_ids,
    decision_body,
    decode_rows,
    instance_batches,
)
from r2bench.lm.kvcache import RowBatch
from r2bench.r2rank.decision import decide

__all__ = [
    "CandidateResult", "decide_instances", "reason_and_decide", "reason_and_decide_instances", "score_instances",
    "score_prompts",
]


@dataclass
class CandidateResult:
    reasoning: Reasoning
    score: float  # the head's score, or the zero-shot margin without a head
    margin: float  # logP(Recommend) - logP(Not Recommend) at the decision position


# ----------------------------------------------------------------------------- generation and decision

def _reason_and_decide(model: Any, tokenizer: Any, state: RowBatch, suffixes: Sequence[Sequence[int]], head: Any,
                       progress: Progress | None = None, **gen_kw: Any):
    """Generate, then decide on the SAME cache: generated tokens after the body (``<answer>...``) are
    masked out and only ``<answer>`` (plus, at most, the last body token, never fed) is run."""
    open_ids = answer_token_ids(tokenizer)["open"]
    reasonings, g = decode_rows(model, tokenizer, state, suffixes, progress=progress, **gen_kw)
    tails = []
    for r, reasoning in enumerate(reasonings):
        b = len(decision_body(tokenizer, reasoning.token_ids))
        for j in range(b, g.fed[r]):  # fed, but after the body: hide it
            g.batch.mask[r, g.base + j] = 0
        tails.append(reasoning.token_ids[g.fed[r]:b] + open_ids)
    hidden, margin, score = decide(model, tokenizer, g.batch, tails, head)
    return reasonings, hidden, margin, score


# ----------------------------------------------------------------------------- several instances per batch

Decided = tuple[list[Reasoning], torch.Tensor, torch.Tensor, torch.Tensor]


def _gather(instances: Sequence[Sequence[Any]], parts: dict[tuple[int, int], tuple]) -> list[Decided]:
    out = []
    for i, prompts in enumerate(instances):
        rows = [parts[(i, j)] for j in range(len(prompts))]
        out.append(([r[0] for r in rows], *(torch.stack([r[k] for r in rows]) for k in (1, 2, 3))))
    return out


@torch.no_grad()
def reason_and_decide_instances(
    model: Any,
    tokenizer: Any,
    instances: Sequence[Sequence[Sequence[int]]],
    *,
    head: Any = None,
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    shared_prefix: bool = True,
    batch_size: int = 20,
    instances_per_batch: int = 1,
    progress: Progress | None = None,
) -> list[Decided]:
    """:func:`reason_and_decide` for several instances (each a list of prompts), ``instances_per_batch``
    of them decoded together; ``progress(k)`` is called as ``k`` more candidates' worth of work is done."""
    gen_kw = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature, top_p=top_p,
                  generator=generator)
    parts: dict[tuple[int, int], tuple] = {}
    for rows, state, suffixes in instance_batches(model, tokenizer, instances, shared_prefix, batch_size, instances_per_batch):
        credit = [0.0]

        def step(k: float) -> None:
            credit[0] += k
            if progress is not None:
                progress(k)

        r, h, m, s = _reason_and_decide(model, tokenizer, state, suffixes, head, progress=step, **gen_kw)
        if progress is not None:
            progress(len(rows) - credit[0])
        for k, key in enumerate(rows):
            parts[key] = (r[k], h[k], m[k], s[k])
        del state
    return _gather(instances, parts)


@torch.no_grad()
def decide_instances(
    model: Any, tokenizer: Any, instances: Sequence[Sequence[Sequence[int]]],
    reasonings: Sequence[Sequence[Reasoning]], *, head: Any = None, shared_prefix: bool = True,
    batch_size: int = 20, instances_per_batch: int = 1, progress: Progress | None = None,
) -> list[Decided]:
    """Decide on given reasonings (e.g. from a serving engine): one prefill of prompt suffix + reasoning
    body + ``<answer>`` per row on the shared prefix; the same decision position as after generation."""
    open_ids = answer_token_ids(tokenizer)["open"]
    parts: dict[tuple[int, int], tuple] = {}
    for rows, state, suffixes in instance_batches(model, tokenizer, instances, shared_prefix, batch_size, instances_per_batch):
        tails = [s + decision_body(tokenizer, reasonings[i][j].token_ids) + open_ids for s, (i, j) in zip(suffixes, rows)]
        h, m, s = decide(model, tokenizer, state, tails, head)
        for k, (i, j) in enumerate(rows):
            parts[(i, j)] = (reasonings[i][j], h[k], m[k], s[k])
        if progress is not None:
            progress(len(rows))
    return _gather(instances, parts)


def reason_and_decide(
    model: Any, tokenizer: Any, prompts_ids: Sequence[Sequence[int]], **options: Any,
) -> Decided:
    """Reasonings, decision hidden states ``[n, H]``, zero-shot margins ``[n]`` and scores ``[n]`` of the prompts.

    The prompts' common prefix is encoded once; ``batch_size`` rows are generated at a
    time, and each row's decision is read on its generation cache (a few tokens per row).
    Keywords: those of :func:`reason_and_decide_instances` (``head``, ``max_new_tokens``,
    ``do_sample``, ``temperature``, ``top_p``, ``generator``, ``shared_prefix``, ``batch_size``).
    """
    return reason_and_decide_instances(model, tokenizer, [prompts_ids], **options)[0]


def _results(decided: Decided) -> list[CandidateResult]:
    reasonings, _, margin, score = decided
    return [CandidateResult(r, float(s), float(m)) for r, m, s in zip(reasonings, margin.tolist(), score.tolist())]


def score_prompts(model: Any, tokenizer: Any, prompts_ids: Sequence[Sequence[int]],
                  **options: Any) -> list[CandidateResult]:
    """Reason about and score each prompt (one instance's candidates): :func:`reason_and_decide`'s
    keywords (``head``, ``max_new_tokens``, ``do_sample``, ..., ``batch_size``), one result per prompt."""
    return _results(reason_and_decide(model, tokenizer, prompts_ids, **options))


def score_instances(model: Any, tokenizer: Any, instances: Sequence[Sequence[Sequence[int]]],
                    **options: Any) -> list[list[CandidateResult]]:
    """:func:`score_prompts` for several instances (``instances_per_batch`` of them decoded together)."""
    return [_results(d) for d in reason_and_decide_instances(model, tokenizer, instances, **options)]
