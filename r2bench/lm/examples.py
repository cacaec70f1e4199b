"""Prompt + response examples and the response-only token loss (SFT, TALLRec; any answer-word fine-tuning).

An example is ``chat prompt + response + EOS`` as token ids with the prompt's length
(:func:`encode_example`); the loss is the token cross-entropy on the response and EOS
only (the prompt tokens are context, never targets). Examples whose prompts begin alike
(one instance's candidates) encode their common prefix once (``r2bench.lm.shared_prefix``),
and only the response positions go through the LM head, so a 50k vocabulary costs
nothing on the (long) prompt. The pass is the policy module's (``r2bench.lm.policy``).
"""

from __future__ import annotations

import torch

from r2bench.lm.generation import chat_prompt_ids
from r2bench.lm.policy import Policy, PolicyBatch, layout_rows, response_nll


def encode_example(tokenizer, messages: list[dict[str, str]], response: str, max_length: int) -> tuple[list[int], int]:
    """(token ids of prompt + response + EOS, number of prompt tokens); long prompts lose their head."""
    prompt = chat_prompt_ids(tokenizer, messages)
    resp = list(tokenizer(response.strip(), add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        resp.append(int(tokenizer.eos_token_id))
    resp = resp[: max(1, max_length // 2)] if len(resp) > max_length // 2 and len(prompt) > max_length // 2 else resp
    over = len(prompt) + len(resp) - max_length
    if over > 0:  # keep the candidate (at the end of the prompt) and the response
        prompt = prompt[over:]
    return prompt + resp, len(prompt)


def examples_batch(group: list[tuple[list[int], int]], pad_id: int, device) -> PolicyBatch:
    """Examples ``(token ids, prompt length)`` as a :class:`r2bench.lm.policy.PolicyBatch` whose response
    block holds each example's response (+ EOS); the prompts' common prefix is shared."""
    return layout_rows([seq[:n] for seq, n in group], [seq[n:] for seq, n in group], pad_id, device)


def prefix_sft_loss(model, group: list[tuple[list[int], int]], pad_id: int) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over the response tokens of examples that share a prompt prefix, and their count.

    ``group``: (token ids, prompt length) of examples whose prompts begin alike (one
    instance's candidates); the common prefix is encoded once (``r2bench.lm.shared_prefix``),
    which gives the same loss as running each example in full. ``model`` is a causal LM or a
    (prepared) :class:`r2bench.lm.policy.Policy`; trainers pass the prepared policy, so that
    the distributed engine sees the whole pass.
    """
    policy = Policy(model) if hasattr(model, "get_output_embeddings") else model
    device = next(policy.parameters()).device
    batch = examples_batch(group, pad_id, device)
    return response_nll(policy(batch), batch)
