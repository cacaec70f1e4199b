"""``generator=openai``: R2Rank reasonings from an OpenAI-compatible *completions* endpoint.

A serving engine (``vllm serve <model> --enable-prefix-caching``, SGLang, llama.cpp)
generates the reasonings; the decision (hidden state for the head, zero-shot margin)
is then computed locally by one prefill over prompt + returned reasoning
(``r2bench.r2rank.inference.decide_instances``, shared prefix, several instances per
batch), so the head sees exactly what it would see with ``generator=hf`` given the
same reasoning tokens.

What is sent: the exact chat-templated prompt (the text whose local tokenization is
the prompt R2Rank scores; with ``server_token_ids=true`` the token ids themselves),
``stop=["</answer>"]``, ``max_tokens=max_reasoning_tokens``, temperature 0 for greedy
decoding (else ``temperature``/``top_p``), ``repeat_penalty=1.0`` (llama.cpp's default
is 1.1; other servers ignore the field) and the request seed. Requests go through
``r2bench.llm``'s client: concurrency, retries, the SQLite cache (a re-run sends
nothing), resume and token accounting.

Text -> tokens. The decision needs the reasoning's token ids:

- exact when the server returns them: with ``server_token_ids=true`` the request asks
  vLLM for ``return_tokens_as_token_ids`` (``logprobs`` tokens ``"token_id:N"``), and
  those ids are used as they are;
- otherwise the text is re-tokenized in context: ``tokenize(prompt_text + text)``
  minus the prompt's ids (falling back to the text alone where the boundary merged).
  That is the generated sequence whenever the model produced the tokenizer's own
  segmentation of its text, which greedy decoding nearly always does; the tests
  check that this path and ``generator=hf`` give the same score for the same text.

Finished or not: OpenAI-compatible servers drop the stop string from the text. A
reasoning counts as finished (and gets ``</answer>`` back, text and ids) when the
server says it stopped on it (vLLM's ``stop_reason``), or, for servers that do not
say, when it stopped (``finish_reason == "stop"``) after an unclosed ``<answer>``.
This flag only feeds the counts and the rationales table: the score is read before
the last ``<answer>`` either way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from r2bench.answer import ANSWER_CLOSE, ANSWER_OPEN, parse_decision
from r2bench.llm.usage import CallResult
from r2bench.lm.generation import Reasoning

TOKEN_ID_PREFIX = "token_id:"


def prompt_text(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The chat-templated prompt text (the same string ``encode_prompts`` tokenizes)."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def completion_requests(client: Any, prompts: Sequence[str | list[int]], *, max_tokens: int, do_sample: bool,
                        temperature: float, top_p: float, server_token_ids: bool) -> list[dict[str, Any]]:
    """One completions request per prompt (text, or token ids with ``server_token_ids``)."""
    extra: dict[str, Any] = {"repeat_penalty": 1.0}
    if server_token_ids:
        extra["return_tokens_as_token_ids"] = True
    return [client.completion_request(
        p, max_tokens=max(1, int(max_tokens)), stop=[ANSWER_CLOSE], logprobs=0 if server_token_ids else None,
        temperature=float(temperature) if do_sample else 0.0, top_p=float(top_p) if do_sample else 1.0,
        extra_body=extra,
    ) for p in prompts]


def server_ids(res: CallResult) -> list[int] | None:
    toks = [t.get("token", "") for t in (res.logprobs or [])]
    if not toks or not all(t.startswith(TOKEN_ID_PREFIX) for t in toks):
        return None
    return [int(t[len(TOKEN_ID_PREFIX):]) for t in toks]


def retokenize(tokenizer: Any, prompt: str, prompt_ids: Sequence[int], text: str) -> list[int]:
    """Token ids of ``text`` as the continuation of ``prompt`` (whose ids are ``prompt_ids``)."""
    if not text:
        return []
    both = list(tokenizer(prompt + text, add_special_tokens=False)["input_ids"])
    if both[: len(prompt_ids)] == list(prompt_ids):
        return both[len(prompt_ids):]
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _stopped_on_close(res: CallResult, text: str) -> bool:
    if res.finish_reason != "stop":
        return False
    if res.stop_reason is not None:
        return res.stop_reason == ANSWER_CLOSE
    at = text.rfind(ANSWER_OPEN)
    return at >= 0 and ANSWER_CLOSE not in text[at:]


def reasoning_of(tokenizer: Any, prompt: str, prompt_ids: Sequence[int], res: CallResult) -> Reasoning:
    """A :class:`Reasoning` (token ids, text, finished, decision) from one completion."""
    text = res.answer or ""
    ids = server_ids(res)
    exact = ids is not None
    if ids is None:
        ids = retokenize(tokenizer, prompt, prompt_ids, text)
    eos = tokenizer.eos_token_id
    if ids and eos is not None and ids[-1] == eos:
        ids = ids[:-1]
    finished = _stopped_on_close(res, text) or ANSWER_CLOSE in text
    if finished and ANSWER_CLOSE not in text:
        text += ANSWER_CLOSE
        close = list(tokenizer(ANSWER_CLOSE, add_special_tokens=False)["input_ids"])
        if not (exact and ids[-len(close):] == close):  # vLLM's ids already hold the stop string's tokens
            ids = ids + close
    return Reasoning(list(ids), text, finished, parse_decision(text))


def remote_reasonings(
    client: Any, tokenizer: Any, messages: Sequence[Sequence[list[dict[str, str]]]],
    prompt_ids: Sequence[Sequence[Sequence[int]]], *, max_tokens: int, do_sample: bool = False,
    temperature: float = 1.0, top_p: float = 1.0, server_token_ids: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[list[list[Reasoning]], list[list[CallResult]]]:
    """Reasonings for several instances (per instance, per candidate) from the completions endpoint.

    All requests go out as one batch (the client's concurrency); failed requests (after
    the client's retries) raise, naming how many failed and why.
    """
    from r2bench.errors import R2BenchError

    texts = [[prompt_text(tokenizer, m) for m in inst] for inst in messages]
    flat_prompts: list[Any] = [list(ids) if server_token_ids else t
                               for inst_t, inst_ids in zip(texts, prompt_ids) for t, ids in zip(inst_t, inst_ids)]
    reqs = completion_requests(client, flat_prompts, max_tokens=max_tokens, do_sample=do_sample,
                               temperature=temperature, top_p=top_p, server_token_ids=server_token_ids)
    results = client.run_batch(reqs, desc="r2rank requests", on_progress=on_progress)
    bad = [r for r in results if not r.ok]
    if bad:
        kinds = sorted({f"{r.error}: {r.error_detail}" for r in bad})[:3]
        raise R2BenchError(f"{len(bad)} of {len(results)} reasoning requests to {client.config.base_url} failed "
                           f"({'; '.join(kinds)}); re-run to retry them (answers so far are cached)")
    out, per_inst, k = [], [], 0
    for inst_t, inst_ids in zip(texts, prompt_ids):
        rs, cs = [], []
        for t, ids in zip(inst_t, inst_ids):
            rs.append(reasoning_of(tokenizer, t, ids, results[k]))
            cs.append(results[k])
            k += 1
        out.append(rs)
        per_inst.append(cs)
    return out, per_inst
