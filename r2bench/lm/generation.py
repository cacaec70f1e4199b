"""Chat prompts and the hand-written decoding loop on a shared-prefix KV cache (every LLM method's HF path).

- :func:`encode_prompts` / :func:`chat_prompt_ids`: token ids of chat prompts (the chat
  template and the generation prompt; no double BOS);
- :func:`decode_rows`: greedy or sampled decoding of one continuation per row of a
  :class:`r2bench.lm.kvcache.RowBatch` (its rows continue their own prefix caches); a row
  stops at ``</answer>`` (the answer format of :mod:`r2bench.answer`), at EOS or at
  ``max_new_tokens``; rows that stopped are fed masked pad tokens (invisible to
  everything) until the batch is done. It returns the :class:`Reasoning` of every row and
  the cache it leaves (:class:`DecodeState`), on which a method can read what it needs
  without a second prefill (R2Rank's decision, ``r2bench.r2rank.inference``);
- :func:`instance_batches`: the decoding batches of several instances (each a list of
  prompts sharing a prefix), their prefixes encoded together once;
- :func:`generate_reasonings` / :func:`generate_instances`: decoding alone;
- the answer format's token ids (:func:`answer_token_ids`) and :func:`decision_body` (a
  reasoning cut before its last ``<answer>``): where a method reads the hidden state of a
  finished or unfinished reasoning.

Devices: every tensor is created on the model's device; a sampling generator must be on
it too (``torch.Generator(device=...)``; :func:`check_generator` says so clearly otherwise).
Serving engines (vLLM, llama.cpp) do the same decoding behind an OpenAI-compatible
endpoint (``r2bench.llm``); this loop stays as the reference and test path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from r2bench.answer import ANSWER_CLOSE, ANSWER_OPEN, parse_decision
from r2bench.lm.kvcache import (
    RowBatch,
    common_prefix_len,
    encode_prefix,
    encode_prefixes,
    forward_rows,
    model_device,
    pad_id,
    pad_rows,
    rows_state,
    start_rows,
)


@dataclass
class Reasoning:
    """One generated reasoning (token ids exclude EOS; they include ``</answer>`` when finished)."""

    token_ids: list[int]
    text: str
    finished: bool  # ``</answer>`` was produced before the length limit
    decision: str | None  # parsed from the text; None when malformed/unfinished


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


def chat_prompt_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a chat prompt ending with the assistant turn's opening (as in inference)."""
    return encode_prompts(tokenizer, [messages])[0]


def answer_token_ids(tokenizer: Any) -> dict[str, list[int]]:
    """Token ids of the answer tag and the two decisions, tokenized on their own.

    ``open``: ``<answer>``; ``recommend`` / ``not_recommend``: the decision words that
    follow it directly (no leading space, as the template writes them).
    """
    from r2bench.answer import NOT_RECOMMEND, RECOMMEND
    from r2bench.errors import R2BenchError

    def enc(s: str) -> list[int]:
        ids = tokenizer(s, add_special_tokens=False)["input_ids"]
        if not ids:
            raise R2BenchError(f"the tokenizer maps {s!r} to no tokens")
        return list(ids)

    return {"open": enc(ANSWER_OPEN), "recommend": enc(RECOMMEND), "not_recommend": enc(NOT_RECOMMEND)}


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


# ----------------------------------------------------------------------------- decoding

Progress = Callable[[float], None]


@dataclass
class DecodeState:
    """What generation leaves behind for scoring on the same cache."""

    batch: RowBatch
    base: int  # cache column of every row's first generated token
    fed: list[int]  # per row: how many generated tokens are in the cache


def decode_rows(
    model: Any, tokenizer: Any, state: RowBatch, suffixes: Sequence[Sequence[int]], *,
    max_new_tokens: int, do_sample: bool, temperature: float, top_p: float, generator: Any,
    progress: Progress | None = None,
) -> tuple[list[Reasoning], DecodeState]:
    """Decode one reasoning per row of ``state`` (whose rows continue with ``suffixes``)."""
    n = len(suffixes)
    dev = model_device(model)
    lm_head = model.get_output_embeddings()
    stop_set = eos_ids(model, tokenizer)
    pad = pad_id(tokenizer)
    ids, mask_new = pad_rows(suffixes, pad, dev, left=True)
    hidden = forward_rows(model, state, ids, mask_new)[:, -1]
    gstate = DecodeState(batch=state, base=state.mask.shape[1], fed=[0] * n)
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
    return decode_rows(
        model, tokenizer, state, [list(s[p:]) for s in prompts_ids], max_new_tokens=max_new_tokens,
        do_sample=do_sample, temperature=temperature, top_p=top_p, generator=generator,
    )[0]


def instance_batches(model: Any, tokenizer: Any, instances: Sequence[Sequence[Sequence[int]]], shared_prefix: bool,
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


@torch.no_grad()
def generate_instances(
    model: Any, tokenizer: Any, instances: Sequence[Sequence[Sequence[int]]], *, shared_prefix: bool = True,
    batch_size: int = 20, instances_per_batch: int = 1, **gen_kw: Any,
) -> list[list[Reasoning]]:
    """:func:`generate_reasonings` for several instances, ``instances_per_batch`` of them decoded together."""
    out: list[list[Any]] = [[None] * len(p) for p in instances]
    for rows, state, suffixes in instance_batches(model, tokenizer, instances, shared_prefix, batch_size, instances_per_batch):
        for (i, j), r in zip(rows, decode_rows(model, tokenizer, state, suffixes, **gen_kw)[0]):
            out[i][j] = r
    return out


