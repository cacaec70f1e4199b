"""Pointwise R2Rank inference with a shared-prefix KV cache.

The K prompts of an instance differ only in the candidate, which the template puts
last. We tokenize the K full chat prompts, take the longest common prefix of their
token ids (so the split is exact by construction, whatever the tokenizer does at the
boundary), encode that prefix ONCE with batch size 1, and copy its KV cache
(``DynamicCache.batch_repeat_interleave``) for the K continuations.

Layout of every batched forward (``_forward_rows``): ``[prefix cache | left padding |
real suffix tokens]``. The 2-D attention mask is 1 over the prefix, 0 over the padding,
1 over the real tokens; position ids are ``cumsum(mask) - 1``, so the suffix of every
row continues at ``prefix_len`` exactly as it would without padding, and every row's
last real token sits in the last column. With ``shared_prefix=False`` the prefix is
empty and the same code scores full prompts (the naive path, kept for comparison).

Steps for one instance (``score_prompts``):

1. generation: greedy (default) or sampled decoding with a hand-written loop over
   the model's forward and the cache; a row stops at ``</answer>``, at EOS, or at
   ``max_new_tokens``; rows that stopped are fed masked pad tokens (invisible to
   everything) until the batch is done;
2. the decision body: the reasoning cut before its last ``<answer>`` (kept whole when
   it has none: unfinished or malformed), then ``<answer>``: every candidate, finished
   or not, gets a decision position and hence a score;
3. the decision on the SAME cache: generated tokens after the body are masked out,
   only ``<answer>`` is fed (plus the last body token, never fed during decoding),
   which gives the last-layer hidden state at the decision position (for the head)
   and the log-probabilities of ``Recommend`` / ``Not Recommend`` (multi-token
   strings through one more short forward, then ``crop``).

``score_decisions`` / ``decision_hidden_states`` / ``zero_shot_margin`` do step 3
from explicit token rows without a generation cache (training code, tests).

The model runs with ``use_cache=True``; tests compare this path against scoring each
candidate alone (batch 1, no padding) under both "sdpa" and "eager" attention.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from r2bench.answer import ANSWER_CLOSE, ANSWER_OPEN, parse_decision
from r2bench.r2rank.head import answer_token_ids


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


def _cache_kw(model: Any) -> str:
    """``cache`` (transformers >= 5.x) or ``past_key_values`` (older), whichever forward takes."""
    decoder = model.get_decoder()
    params = inspect.signature(decoder.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _out_cache(out: Any) -> Any:
    return getattr(out, "cache", None) if getattr(out, "cache", None) is not None else out.past_key_values


def _new_cache(model: Any) -> Any:
    from transformers import DynamicCache

    try:
        return DynamicCache(config=model.config)
    except TypeError:
        return DynamicCache()


def _expand_cache(cache: Any, n: int) -> Any:
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
class _Batch:
    """Running state of a batch on top of a (possibly empty) prefix cache."""

    cache: Any
    mask: torch.Tensor  # [n, cache_len]


@torch.no_grad()
def encode_prefix(model: Any, prefix_ids: Sequence[int]) -> Any:
    """KV cache of the shared prefix (batch 1), or None for an empty prefix."""
    if not prefix_ids:
        return None
    dev = model.get_output_embeddings().weight.device
    ids = torch.tensor([list(prefix_ids)], dtype=torch.long, device=dev)
    cache = _new_cache(model)
    model.get_decoder()(input_ids=ids, use_cache=True, **{_cache_kw(model): cache})
    return cache


def _forward_rows(model: Any, state: _Batch, ids: torch.Tensor, mask_new: torch.Tensor) -> torch.Tensor:
    """Run new tokens ``ids`` [n, t] on the cache; returns last-layer hidden states [n, t, H]."""
    mask = torch.cat([state.mask, mask_new], dim=1)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1]:]
    out = model.get_decoder()(
        input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **{_cache_kw(model): state.cache}
    )
    state.cache = _out_cache(out)
    state.mask = mask
    return out.last_hidden_state


def _start(model: Any, prefix_cache: Any, prefix_len: int, n: int) -> _Batch:
    dev = model.get_output_embeddings().weight.device
    cache = _expand_cache(prefix_cache, n) if prefix_cache is not None else _new_cache(model)
    return _Batch(cache=cache, mask=torch.ones((n, prefix_len), dtype=torch.long, device=dev))


def _pick(logits: torch.Tensor, do_sample: bool, temperature: float, top_p: float, generator: Any) -> torch.Tensor:
    if not do_sample:
        return logits.argmax(-1)
    logits = logits.float() / max(temperature, 1e-6)
    probs = torch.softmax(logits, -1)
    if top_p < 1.0:
        sp, si = probs.sort(-1, descending=True)
        keep = sp.cumsum(-1) - sp < top_p
        sp = sp * keep
        probs = torch.zeros_like(probs).scatter(-1, si, sp)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for src in (getattr(model, "generation_config", None), model.config, tokenizer):
        e = getattr(src, "eos_token_id", None)
        if e is None:
            continue
        ids.update(e if isinstance(e, (list, tuple)) else [e])
    return {int(i) for i in ids}


# ----------------------------------------------------------------------------- public API

@dataclass
class _GenState:
    """What ``generate_reasonings`` leaves behind for scoring on the same cache."""

    batch: _Batch
    base: int  # cache column of every row's first generated token
    fed: list[int]  # per row: how many generated tokens are in the cache


def _generate(
    model: Any, tokenizer: Any, prompts_ids: Sequence[Sequence[int]], prefix: tuple[int, Any], *,
    max_new_tokens: int, do_sample: bool, temperature: float, top_p: float, generator: Any,
) -> tuple[list[Reasoning], _GenState]:
    n = len(prompts_ids)
    p, pcache = prefix
    dev = model.get_output_embeddings().weight.device
    lm_head = model.get_output_embeddings()
    stop_set = eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    state = _start(model, pcache, p, n)
    ids, mask_new = pad_rows([list(s[p:]) for s in prompts_ids], pad, dev, left=True)
    hidden = _forward_rows(model, state, ids, mask_new)[:, -1]
    gstate = _GenState(batch=state, base=state.mask.shape[1], fed=[0] * n)
    gen: list[list[int]] = [[] for _ in range(n)]
    finished = [False] * n
    done = [max_new_tokens <= 0] * n
    for step in range(max(max_new_tokens, 0)):
        nxt = _pick(lm_head(hidden), do_sample, temperature, top_p, generator).tolist()
        for row in range(n):
            if done[row]:
                continue
            tok = int(nxt[row])
            if tok in stop_set:
                done[row] = True
                continue
            gen[row].append(tok)
            if ANSWER_CLOSE in tokenizer.decode(gen[row][-16:], skip_special_tokens=False):
                finished[row] = done[row] = True
        if all(done) or step == max_new_tokens - 1:
            break
        # Rows that are done are fed a masked pad token: invisible to every other position.
        feed = [pad if done[r] else gen[r][-1] for r in range(n)]
        step_ids = torch.tensor(feed, dtype=torch.long, device=dev)[:, None]
        step_mask = torch.tensor([0 if done[r] else 1 for r in range(n)], dtype=torch.long, device=dev)[:, None]
        for r in range(n):
            gstate.fed[r] += 0 if done[r] else 1
        hidden = _forward_rows(model, state, step_ids, step_mask)[:, -1]
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
    return _generate(
        model, tokenizer, prompts_ids, prefix, max_new_tokens=max_new_tokens, do_sample=do_sample,
        temperature=temperature, top_p=top_p, generator=generator,
    )[0]


def decision_body(tokenizer: Any, reasoning_ids: Sequence[int]) -> list[int]:
    """The reasoning's token ids before its last ``<answer>`` (all of them when there is none)."""
    ids = list(reasoning_ids)
    text = tokenizer.decode(ids, skip_special_tokens=False)
    at = text.rfind(ANSWER_OPEN)
    if at < 0:
        return ids
    for j in range(len(ids) + 1):  # first prefix whose text reaches the tag
        if len(tokenizer.decode(ids[:j], skip_special_tokens=False)) > at:
            return ids[: j - 1] if j > 0 else []
    return ids


def decision_suffixes(tokenizer: Any, suffixes: Sequence[Sequence[int]], reasonings: Sequence[Reasoning]) -> list[list[int]]:
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
    state = _Batch(cache=cache if cache is not None else _new_cache(model), mask=past)
    hidden = _forward_rows(model, state, input_ids, attention_mask[:, -t:])
    new_mask = attention_mask[:, -t:]
    last = t - 1 - new_mask.flip(-1).argmax(-1)
    return hidden[torch.arange(n, device=hidden.device), last]


def _decide(model: Any, tokenizer: Any, state: _Batch, tails: Sequence[Sequence[int]], head: Any):
    """Feed each row's tail (ending with ``<answer>``) and read hidden state, margin, score there."""
    dev = model.get_output_embeddings().weight.device
    lm_head = model.get_output_embeddings()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    n = len(tails)
    ids, mask_new = pad_rows(tails, pad, dev, left=True)
    hidden = _forward_rows(model, state, ids, mask_new)[:, -1]
    first = torch.log_softmax(lm_head(hidden).float(), -1)
    ans = answer_token_ids(tokenizer)
    lps = []
    for key in ("recommend", "not_recommend"):
        cont = ans[key]
        lp = first[:, cont[0]].clone()
        if len(cont) > 1:
            c_ids = torch.tensor([cont[:-1]] * n, dtype=torch.long, device=dev)
            h = _forward_rows(model, state, c_ids, torch.ones_like(c_ids))
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
    state = _start(model, pcache, p, len(decision_rows))
    return _decide(model, tokenizer, state, decision_rows, head)


def zero_shot_margin(model: Any, tokenizer: Any, decision_rows: Sequence[Sequence[int]]) -> torch.Tensor:
    """logP(Recommend) - logP(Not Recommend) after each full token sequence (which ends with ``<answer>``)."""
    return score_decisions(model, tokenizer, decision_rows)[1]


def _reason_and_decide(model: Any, tokenizer: Any, prompts_ids: Sequence[Sequence[int]], prefix: tuple[int, Any],
                       head: Any, **gen_kw: Any) -> tuple[list[Reasoning], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Generate, then decide on the SAME cache: generated tokens after the body (``<answer>...``) are
    masked out and only ``<answer>`` (plus, at most, the last body token, never fed) is run."""
    open_ids = answer_token_ids(tokenizer)["open"]
    reasonings, g = _generate(model, tokenizer, prompts_ids, prefix, **gen_kw)
    tails = []
    for r, reasoning in enumerate(reasonings):
        b = len(decision_body(tokenizer, reasoning.token_ids))
        for j in range(b, g.fed[r]):  # fed, but after the body: hide it
            g.batch.mask[r, g.base + j] = 0
        tails.append(reasoning.token_ids[g.fed[r]:b] + open_ids)
    hidden, margin, score = _decide(model, tokenizer, g.batch, tails, head)
    return reasonings, hidden, margin, score


@torch.no_grad()
def reason_and_decide(
    model: Any,
    tokenizer: Any,
    prompts_ids: Sequence[Sequence[int]],
    *,
    head: Any = None,
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    shared_prefix: bool = True,
    batch_size: int = 20,
) -> tuple[list[Reasoning], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reasonings, decision hidden states ``[n, H]``, zero-shot margins ``[n]`` and scores ``[n]`` of the prompts.

    The prompts' common prefix is encoded once; ``batch_size`` rows are generated at a
    time, and each row's decision is read on its generation cache (a few tokens per row).
    """
    p = common_prefix_len(prompts_ids) if shared_prefix else 0
    pcache = encode_prefix(model, prompts_ids[0][:p]) if p else None
    reasonings: list[Reasoning] = []
    parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    bs = max(1, int(batch_size))
    for start in range(0, len(prompts_ids), bs):
        r, h, m, s = _reason_and_decide(
            model, tokenizer, prompts_ids[start:start + bs], (p, pcache), head, max_new_tokens=max_new_tokens,
            do_sample=do_sample, temperature=temperature, top_p=top_p, generator=generator,
        )
        reasonings += r
        parts.append((h, m, s))
    hidden, margin, score = (torch.cat([x[i] for x in parts]) for i in range(3))
    return reasonings, hidden, margin, score


def score_prompts(model: Any, tokenizer: Any, prompts_ids: Sequence[Sequence[int]],
                  **options: Any) -> list[CandidateResult]:
    """Reason about and score each prompt (one instance's candidates): :func:`reason_and_decide`'s
    keywords (``head``, ``max_new_tokens``, ``do_sample``, ..., ``batch_size``), one result per prompt."""
    reasonings, _, margin, score = reason_and_decide(model, tokenizer, prompts_ids, **options)
    return [CandidateResult(r, float(s), float(m)) for r, m, s in zip(reasonings, margin.tolist(), score.tolist())]
