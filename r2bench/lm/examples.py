"""Prompt + response examples and the response-only token loss (SFT, TALLRec; any answer-word fine-tuning).

An example is ``chat prompt + response + EOS`` as token ids with the prompt's length
(:func:`encode_example`); the loss is the token cross-entropy on the response and EOS
only (the prompt tokens are context, never targets). Examples whose prompts begin alike
(one instance's candidates) encode their common prefix once (``r2bench.lm.shared_prefix``),
and only the response positions go through the LM head, so a 50k vocabulary costs
nothing on the (long) prompt.
"""

from __future__ import annotations

import torch

from r2bench.lm.generation import chat_prompt_ids
from r2bench.lm.shared_prefix import pad_rows, prefix_forward, split_prefix


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


def prefix_sft_loss(model, group: list[tuple[list[int], int]], pad_id: int) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over the response tokens of examples that share a prompt prefix, and their count.

    ``group``: (token ids, prompt length) of examples whose prompts begin alike (one
    instance's candidates); the common prefix is encoded once
    (``r2bench.lm.shared_prefix``), which gives the same loss as running each example in full.
    """
    dev = model.get_output_embeddings().weight.device
    prefix, _ = split_prefix([ids for ids, _ in group])
    p = max(0, min(len(prefix), min(n for _, n in group) - 1))  # every first target stays in its row
    ids, attn = pad_rows([seq[p:] for seq, _ in group], pad_id, dev, left=False)
    target = torch.zeros_like(ids, dtype=torch.bool)
    for i, (seq, n_prompt) in enumerate(group):
        target[i, n_prompt - p: len(seq) - p] = True
    h = prefix_forward(model, prefix[:p], ids, attn)
    pred = target[:, 1:]  # column t-1 predicts the token in column t
    logits = model.get_output_embeddings()(h[:, :-1][pred])
    loss = torch.nn.functional.cross_entropy(logits.float(), ids[:, 1:][pred], reduction="sum")
    return loss, int(pred.sum())
