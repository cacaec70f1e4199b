"""Pointwise R2Rank inference: generation with a shared-prefix KV cache, then the decision.

The K prompts of an instance share everything up to the candidate; that prefix is
encoded once (``r2bench.r2rank.kvcache``: the layout, several instances at once).

Steps for a batch of rows (``reason_and_decide_instances``; one instance:
``score_prompts``):

1. generation: greedy (default) or sampled decoding with a hand-written loop over
   the model's forward and the cache; a row stops at ``</answer>``, at EOS, or at
   ``max_new_tokens``; rows that stopped are fed masked pad tokens (invisible to
   everything) until the batch is done;
2. the decision body: the reasoning cut before its last ``<answer>``, then ``<answer>``
   (``r2bench.r2rank.decision``);
3. the decision on the SAME cache: generated tokens after the body are masked out,
   only ``<answer>`` is fed (plus the last body token, never fed during decoding).

Several instances per batch (``instances_per_batch``): the rows of a group of
instances are decoded together, each on its own instance's prefix. ``decide_instances``
does step 3 for reasonings that come from elsewhere (a serving engine): one prefill of
prompt suffix + reasoning body + ``<answer>`` on the shared prefix.

Devices: every tensor is created on the model's device; a sampling generator must be
on it too (``torch.Generator(device=...)``; ``check_generator`` says so clearly otherwise).

The model runs with ``use_cache=True``; tests compare this path against scoring each
candidate alone (batch 1, no padding) under both "sdpa" and "eager" attention, and
several instances per batch against one at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from r2bench.r2rank.decision import (
    decide,
    decision_body,
    decision_hidden_states,
    decision_suffixes,
    score_decisions,
    zero_shot_margin,
)
from r2bench.r2rank.head import answer_token_ids
from r2bench.r2rank.kvcache import (
    Prefixes,
    RowBatch,
    cache_kw,
    common_prefix_len,
    encode_prefix,
    encode_prefixes,
    forward_rows,
    model_device,
    new_cache,
    pad_id,
    pad_rows,
    rows_state,
    start_rows,
)
from r2bench.answer import ANSWER_CLOSE, parse_decision

__all__ = [  # the decision and KV-cache helpers are re-exported: one import for the callers
    "CandidateResult", "Prefixes", "Reasoning", "cache_kw", "check_generator", "common_prefix_len", "decide",
    "decide_instances", "decision_body", "decision_hidden_states", "decision_suffixes", "encode_prefix",
    "encode_prefixes", "encode_prompts", "eos_ids", "generate_instances", "generate_reasonings", "model_device",
    "new_cache", "pad_rows", "reason_and_decide", "reason_and_decide_instances", "score_decisions",
    "score_instances", "score_prompts", "zero_shot_margin",
]



@dataclass
class Reasoning:
    """One generated reasoning (token ids exclude EOS; they include ``</answer>`` when finished)."""

    token_ids: list[int]
    text: str
    finished: bool  # ``</answer>`` was produced before the length limit
    decision: str | None  # parsed from the text; None when malformed/unfinished


@dataclass
class CandidateResult:
    reasoning: Reasoning
    score: float  # the head's score, or the zero-shot margin without a head
    margin: float  # logP(Recommend) - logP(Not Recommend) at the decision position


# ----------------------------------------------------------------------------- helpers

def encode_prompts(tokenizer: Any, messages_list: Sequence[list[dict[str, str]]]) -> list[list[int]]:
    """Token ids of each chat prompt (chat template + generation prompt; no double BOS)."""
    texts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages_list]
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def check_generator(generator: Any, device: Any) -> None:
    """A sampling generator must live on the device it samples on (CUDA refuses a CPU generator)."""
    if generator is None:
        return
    g, d = torch.device(generator.device), torch.device(device)
    if g.type != d.type or (g.index or 0) != (d.index or 0):
        from r2bench.errors import R2BenchError

        raise R2BenchError(
            f"the sampling generator is on {g} but the model is on {d}: "
            f"create it with torch.Generator(device={str(d)!r})"
        )


def _pick(logits: torch.Tensor, do_sample: bool, temperature: float, top_p: float, generator: Any) -> torch.Tensor:
    if not do_sample:
        return logits.argmax(-1)
    check_generator(generator, logits.device)
    logits = logits.float() / max(temperature, 1e-6)
    probs = torch.softmax(logits, -1)
    if top_p < 1.0:
        sp, si = probs.sort(-1, descending=True)
        keep = sp.cumsum(-1) - sp < top_p
        sp = sp * keep
        probs = torch.zeros_like(probs).scatter(-1, si, sp)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _closing_filter(tokenizer: Any) -> Callable[[int], bool]:
    """Whether a new token can complete ``</answer>``: its piece must hold the tag's last character ``>``
    (also true of byte tokens such as ``<0x3E>``), so most steps skip decoding the row's tail."""
    memo: dict[int, bool] = {}

    def may_close(tok: int) -> bool:
        if tok not in memo:
            piece = tokenizer.convert_ids_to_tokens(int(tok))
            memo[tok] = piece is None or ">" in str(piece)
        return memo[tok]

    return may_close


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for src in (getattr(model, "generation_config", None), model.config, tokenizer):
        e = getattr(src, "eos_token_id", None)
        if e is None:
            continue
        ids.update(e if isinstance(e, (list, tuple)) else [e])
    return {int(i) for i in ids}


# ----------------------------------------------------------------------------- generation and decision

Progress = Callable[[float], None]


@dataclass
class _GenState:
    """What generation leaves behind for scoring on the same cache."""

    batch: RowBatch
    base: int  # cache column of every row's first generated token
    fed: list[int]  # per row: how many generated tokens are in the cache


def _generate(
    model: Any, tokenizer: Any, state: RowBatch, suffixes: Sequence[Sequence[int]], *,
    max_new_tokens: int, do_sample: bool, temperature: float, top_p: float, generator: Any,
    progress: Progress | None = None,
) -> tuple[list[Reasoning], _GenState]:
    """Decode one reasoning per row of ``state`` (whose rows continue with ``suffixes``)."""
    n = len(suffixes)
    dev = model_device(model)
    lm_head = model.get_output_embeddings()
    stop_set = eos_ids(model, tokenizer)
    pad = pad_id(tokenizer)
    ids, mask_new = pad_rows(suffixes, pad, dev, left=True)
    hidden = forward_rows(model, state, ids, mask_new)[:, -1]
    gstate = _GenState(batch=state, base=state.mask.shape[1], fed=[0] * n)
    gen: list[list[int]] = [[] for _ in range(n)]
    finished = [False] * n
    done = [max_new_tokens <= 0] * n
    unit = n / (max(max_new_tokens, 0) + 1)  # progress credit per decoding step (the decision is the last unit)
    may_close = _closing_filter(tokenizer)
    for step in range(max(max_new_tokens, 0)):
        nxt = _pick(lm_head(hidden), do_sample, temperature, top_p, generator).tolist()
        if progress is not None:
            progress(unit)
        for row in range(n):
            if done[row]:
                continue
            tok = int(nxt[row])
            if tok in stop_set:
                done[row] = True
                continue
            gen[row].append(tok)
            if may_close(tok) and ANSWER_CLOSE in tokenizer.decode(gen[row][-16:], skip_special_tokens=False):
                finished[row] = done[row] = True
        if all(done) or step == max_new_tokens - 1:
            break
        # Rows that are done are fed a masked pad token: invisible to every other position.
        feed = [pad if done[r] else gen[r][-1] for r in range(n)]
        step_ids = torch.tensor(feed, dtype=torch.long, device=dev)[:, None]
        step_mask = torch.tensor([0 if done[r] else 1 for r in range(n)], dtype=torch.long, device=dev)[:, None]
        for r in range(n):
            gstate.fed[r] += 0 if done[r] else 1
        hidden = forward_rows(model, state, step_ids, step_mask)[:, -1]
    out = []
    for row in range(n):
        text = tokenizer.decode(gen[row], skip_special_tokens=False)
        out.append(Reasoning(gen[row], text, finished[row], parse_decision(text)))
    return out, gstate


@torch.no_grad()
def generate_reasonings(
    model: Any,
    tokenizer: Any,
    prompts_ids: Sequence[Sequence[int]],
    *,
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    shared_prefix: bool = True,
    prefix: tuple[int, Any] | None = None,
) -> list[Reasoning]:
    """Generate one reasoning per prompt; the prompts' common token prefix is encoded once.

    ``prefix=(prefix_len, cache)`` reuses an already encoded prefix (``encode_prefix``).
    """
    if prefix is None:
        p = common_prefix_len(prompts_ids) if shared_prefix else 0
        prefix = (p, encode_prefix(model, prompts_ids[0][:p]))
    p, pcache = prefix
    state = start_rows(model, pcache, p, len(prompts_ids))
    return _generate(
        model, tokenizer, state, [list(s[p:]) for s in prompts_ids], max_new_tokens=max_new_tokens,
        do_sample=do_sample, temperature=temperature, top_p=top_p, generator=generator,
    )[0]


def _reason_and_decide(model: Any, tokenizer: Any, state: RowBatch, suffixes: Sequence[Sequence[int]], head: Any,
                       progress: Progress | None = None, **gen_kw: Any):
    """Generate, then decide on the SAME cache: generated tokens after the body (``<answer>...``) are
    masked out and only ``<answer>`` (plus, at most, the last body token, never fed) is run."""
    open_ids = answer_token_ids(tokenizer)["open"]
    reasonings, g = _generate(model, tokenizer, state, suffixes, progress=progress, **gen_kw)
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


def _batches(model: Any, tokenizer: Any, instances: Sequence[Sequence[Sequence[int]]], shared_prefix: bool,
             batch_size: int, instances_per_batch: int) -> Iterator[tuple[list[tuple[int, int]], RowBatch, list[list[int]]]]:
    """Yield ``(rows [(instance, prompt)], state, suffixes)`` for every decoding batch.

    Groups of ``instances_per_batch`` instances have their prefixes encoded together once;
    the ``c``-th chunk of ``batch_size`` prompts of every instance of the group forms batch ``c``.
    """
    if any(len(p) == 0 for p in instances):
        raise ValueError("every instance needs at least one prompt")
    ipb, bs = max(1, int(instances_per_batch)), max(1, int(batch_size))
    for g0 in range(0, len(instances), ipb):
        group = list(range(g0, min(g0 + ipb, len(instances))))
        plens = [common_prefix_len(instances[i]) if shared_prefix else 0 for i in group]
        pre = encode_prefixes(model, [instances[i][0][:p] for i, p in zip(group, plens)], pad_id(tokenizer))
        for c in range(max(-(-len(instances[i]) // bs) for i in group)):
            rows = [(gi, j) for gi, i in enumerate(group) for j in range(c * bs, min((c + 1) * bs, len(instances[i])))]
            state = rows_state(model, pre, [gi for gi, _ in rows])
            suffixes = [list(instances[group[gi]][j][plens[gi]:]) for gi, j in rows]
            yield [(group[gi], j) for gi, j in rows], state, suffixes


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
    for rows, state, suffixes in _batches(model, tokenizer, instances, shared_prefix, batch_size, instances_per_batch):
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
def generate_instances(
    model: Any, tokenizer: Any, instances: Sequence[Sequence[Sequence[int]]], *, shared_prefix: bool = True,
    batch_size: int = 20, instances_per_batch: int = 1, **gen_kw: Any,
) -> list[list[Reasoning]]:
    """:func:`generate_reasonings` for several instances, ``instances_per_batch`` of them decoded together."""
    out: list[list[Any]] = [[None] * len(p) for p in instances]
    for rows, state, suffixes in _batches(model, tokenizer, instances, shared_prefix, batch_size, instances_per_batch):
        for (i, j), r in zip(rows, _generate(model, tokenizer, state, suffixes, **gen_kw)[0]):
            out[i][j] = r
    return out


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
    for rows, state, suffixes in _batches(model, tokenizer, instances, shared_prefix, batch_size, instances_per_batch):
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
