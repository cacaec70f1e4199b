"""R2ec's passes through the LM: item embeddings, user states with reasoning log-probs, and rollouts.

Every pass that reads hidden states or log-probs is one forward of the policy module
(:class:`r2bench.lm.policy.Policy`), which runs the shared-prefix pass: the G reasonings
of a user share its prompt, and a batch of item prompts shares the item instruction, so
those tokens are encoded once per pass (the result equals the full forward of each row).

Rollouts come from ``generator=hf`` (Hugging Face ``generate`` on the policy's LM,
stopping at ``<answer>``) or ``generator=openai`` (an OpenAI-compatible completions
endpoint, e.g. vLLM, serving the current LoRA adapter, synced after each optimiser
step through its runtime LoRA endpoint; :class:`ServedPolicy`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from baselines.r2ec_prompts import ANSWER_OPEN, close_reasoning

log = logging.getLogger(__name__)


def open_ids(tokenizer: Any) -> list[int]:
    return list(tokenizer(ANSWER_OPEN, add_special_tokens=False)["input_ids"])


def _device(policy: Any) -> Any:
    inner = getattr(policy, "module", policy)  # a DDP-wrapped policy
    return inner.lm.get_output_embeddings().weight.device


def last_states(policy: Any, rows: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """Last-layer hidden state ``[n, H]`` at the last token of each row (one policy forward; the rows'
    common prefix encoded once)."""
    from r2bench.lm.policy import last_position_batch

    batch = last_position_batch(rows, pad_id, _device(policy), decisions=True)
    return policy(batch, logprobs=False).hidden


def item_embeddings(policy: Any, prompts: Sequence[Sequence[int]], pad_id: int, batch: int = 32) -> torch.Tensor:
    """Item embeddings ``[n, H]`` (float32) of item prompts (each ending in the pre-filled ``<answer>``), no gradient."""
    out = []
    with torch.no_grad():
        for s in range(0, len(prompts), batch):
            out.append(last_states(policy, prompts[s:s + batch], pad_id).float())
    return torch.cat(out) if out else torch.zeros((0, policy.lm.config.hidden_size))


def make_policy(lm: Any) -> Any:
    """The R2ec policy module: :class:`r2bench.lm.policy.Policy` whose one ``forward`` also embeds a batch of
    items, so that a training pass (a user's reasonings AND the step's in-batch items) is a single forward
    of the module the engine wraps (DDP prepares its gradient reduction per forward)."""
    from r2bench.lm.policy import Policy

    class _R2ecPolicy(Policy):
        def forward(self, batch=None, *, items=None, **kw):
            out = super().forward(batch, **kw)
            if items is not None:
                out.item_hidden = super().forward(items, logprobs=False).hidden
            return out

    return _R2ecPolicy(lm)


@dataclass
class UserPass:
    logps: torch.Tensor  #: [G, T] log-probs of the completion tokens (0 where masked)
    mask: torch.Tensor  #: [G, T] 1 on completion tokens (reasoning + the closing <answer>)
    user_h: torch.Tensor  #: [G, H] hidden state at the last token (the <answer> the reasoning ends with)
    item_h: torch.Tensor | None = None  #: [M, H] the in-batch items' embeddings, when asked for


def user_pass(policy: Any, prompt: Sequence[int], completions: Sequence[Sequence[int]], pad_id: int,
              need_logprobs: bool = True, items: Sequence[Sequence[int]] | None = None) -> UserPass:
    """One policy forward over a user's G completions (each ending in ``<answer>``) on its shared prompt:
    the completion tokens' log-probs and the hidden state at each completion's last token; with ``items``
    (item prompts), their embeddings from the same forward call."""
    from r2bench.lm.policy import last_position_batch, layout_rows

    dev = _device(policy)
    batch = layout_rows([list(prompt)] * len(completions), [list(c) for c in completions], pad_id, dev)
    batch.decision_row = torch.arange(len(completions), device=dev)
    batch.decision_col = torch.tensor([batch.prompt_width + len(c) - 1 for c in completions], device=dev)
    if items is not None:
        out = policy(batch, logprobs=need_logprobs, items=last_position_batch(items, pad_id, dev, decisions=True))
    else:
        out = policy(batch, logprobs=need_logprobs)
    mask = batch.response_mask
    logps = out.logprobs if need_logprobs else torch.zeros(mask.shape, device=dev)
    return UserPass(logps, mask, out.hidden, getattr(out, "item_hidden", None))


def _strip_stop(ids: list[int], stop_ids: set[int]) -> list[int]:
    while ids and ids[-1] in stop_ids:
        ids = ids[:-1]
    return ids


def hf_rollouts(model: Any, tokenizer: Any, prompt: Sequence[int], n: int, max_new_tokens: int, greedy: bool,
                temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0) -> list[tuple[list[int], bool]]:
    """``n`` reasonings of one prompt from the policy (HF ``generate``), each closed with ``<answer>``.

    Returns ``(completion ids ending in <answer>, whether the model wrote <answer> itself)``.
    Sampling is seeded (``torch.manual_seed(seed)`` right before ``generate``).
    """
    from transformers import GenerationConfig

    dev = model.get_output_embeddings().weight.device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = torch.tensor([list(prompt)], dtype=torch.long, device=dev)
    kw: dict[str, Any] = dict(max_new_tokens=max(1, int(max_new_tokens)), pad_token_id=pad,
                              eos_token_id=tokenizer.eos_token_id, stop_strings=[ANSWER_OPEN])
    if greedy:
        gen_cfg = GenerationConfig(do_sample=False, num_return_sequences=1, **kw)
    else:
        gen_cfg = GenerationConfig(do_sample=True, temperature=float(temperature), top_k=int(top_k) or None,
                                   top_p=float(top_p), num_return_sequences=int(n), **kw)
    torch.manual_seed(int(seed))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=gen_cfg,
                             tokenizer=tokenizer)
    if was_training:
        model.train()
    stops = {int(pad)} | ({int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set())
    oid = open_ids(tokenizer)
    gens = [_strip_stop(out[i, ids.shape[1]:].tolist(), stops) for i in range(out.shape[0])]
    if greedy:
        gens = gens * n
    return [close_reasoning(tokenizer, g, oid) for g in gens]


class ServedPolicy:
    """Rollouts from an OpenAI-compatible completions endpoint serving the policy as a LoRA adapter.

    After each optimiser step the trainer calls :meth:`sync`: :class:`r2bench.llm.lora_sync.LoRASync`
    saves the adapter under ``<work>/served/`` and loads it into the server under a name of its own
    (``r2ec-step-000012``; vLLM: ``POST /v1/load_lora_adapter`` with
    ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``), unloading older ones; the following requests name
    that adapter as their ``model``. The request carries ``stop=["<answer>"]``, the sampling settings
    (``top_k`` in the body, as vLLM reads it) and a seed per (step, user, sample); the returned text is
    re-tokenized after the prompt and closed with ``<answer>``. Responses go through r2bench's LLM
    client (cache, retries). Under several processes the main one publishes and every process names
    the same adapter (the names follow the step).
    """

    def __init__(self, cfg: Any, tokenizer: Any, work: Path, seed: int = 0, publish: bool = True):
        from r2bench.extras import require
        from r2bench.llm.client import LLMClient
        from r2bench.llm.lora_sync import LoRASync

        require("openai", purpose="R2ec rollouts with generator=openai")
        self.cfg, self.tok, self.work = cfg, tokenizer, Path(work)
        self.client = LLMClient(cfg, seed=seed, allow_partial=True)
        self.lora = LoRASync(cfg.base_url, self.work / "served", prefix="r2ec", keep=2, timeout_s=cfg.timeout_s)
        self.publish = publish
        self.model_name = cfg.model  # the base model until the first sync

    def sync(self, model: Any, step: int, name: str | None = None) -> None:
        """Publish the current adapter (as ``name``, default ``r2ec-step-<step>``); later requests use it."""
        from r2bench.llm.lora_sync import adapter_name

        if name is None:
            self.model_name = self.lora.publish(model, step) if self.publish else adapter_name("r2ec", step)
        else:
            if self.publish:
                self.lora.load(name, self.lora.save(model, name))
            self.model_name = name

    def rollouts(self, prompts: Sequence[Sequence[int]], n: int, max_new_tokens: int, greedy: bool,
                 temperature: float, top_k: int, top_p: float, seeds: Sequence[int]) -> list[list[tuple[list[int], bool]]]:
        """Per prompt, ``n`` closed reasonings (one request each, seeds ``seeds[p] + j``)."""
        from r2bench.errors import R2BenchError

        texts = [self.tok.decode(list(p)) for p in prompts]
        reqs = []
        for p, text in enumerate(texts):
            for j in range(1 if greedy else n):
                extra: dict[str, Any] = {"repeat_penalty": 1.0}
                if top_k and not greedy:
                    extra["top_k"] = int(top_k)
                req = self.client.completion_request(
                    text, max_tokens=max(1, int(max_new_tokens)), stop=[ANSWER_OPEN],
                    temperature=0.0 if greedy else float(temperature), top_p=1.0 if greedy else float(top_p),
                    extra_body=extra)
                req["model"] = self.model_name
                req["seed"] = int(seeds[p]) + j
                reqs.append(req)
        results = self.client.run_batch(reqs, desc="r2ec rollouts")
        bad = [r for r in results if not r.ok]
        if bad:
            raise R2BenchError(f"{len(bad)} of {len(results)} R2ec rollout requests to {self.cfg.base_url} failed "
                               f"({bad[0].error}: {bad[0].error_detail}); re-run to retry (answers so far are cached)")
        oid, out, k = open_ids(self.tok), [], 0
        for p, text in enumerate(texts):
            got = []
            for _ in range(1 if greedy else n):
                ans = results[k].answer or ""
                k += 1
                both = list(self.tok(text + ans, add_special_tokens=False)["input_ids"])
                pids = list(prompts[p])
                ids = both[len(pids):] if both[: len(pids)] == pids else list(self.tok(ans, add_special_tokens=False)["input_ids"])
                ids = _strip_stop(ids, {int(self.tok.eos_token_id)} if self.tok.eos_token_id is not None else set())
                stopped = results[k - 1].finish_reason == "stop" and (results[k - 1].stop_reason in (None, ANSWER_OPEN))
                closed, wrote = close_reasoning(self.tok, ids, oid)
                got.append((closed, wrote or (stopped and results[k - 1].stop_reason == ANSWER_OPEN)))
            out.append(got * n if greedy else got)
        return out
