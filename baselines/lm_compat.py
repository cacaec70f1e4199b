"""Everything the trainable LLM baselines (Prompt4NR, R2ec) take from the shared LLM layer, in one place.

The shared layer (backbones, chat prompts, the shared-prefix forward, checkpoints) is
moving out of ``r2bench/r2rank/`` into ``r2bench/lm/`` (issue 24); once it has, this
module is the only one under ``baselines/`` whose imports change, and none of them
points into ``r2bench.r2rank``. Heavy imports happen inside the functions, so importing
this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def load_backbone(backbone: str, adapter: str | None = None, device: str = "auto", dtype: str = "auto",
                  merge_adapter: bool = True, trainable: bool = False) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a backbone name or folder, with an optional peft adapter."""
    from r2bench.r2rank.backbones import load_backbone as _load

    return _load(backbone, adapter=adapter, device=device, dtype=dtype, merge_adapter=merge_adapter,
                 trainable=trainable)


def resolve_backbone(name_or_path: str) -> Path:
    from r2bench.r2rank.backbones import resolve_backbone as _resolve

    return _resolve(name_or_path)


def prepare_tokenizer(tokenizer: Any) -> Any:
    from r2bench.r2rank.backbones import prepare_tokenizer as _prepare

    return _prepare(tokenizer)


def save_policy(model: Any, tokenizer: Any, folder: Path) -> None:
    """The policy as safetensors: a LoRA adapter folder, or a full model folder (never pickle)."""
    from r2bench.r2rank.trainutil import save_policy as _save

    _save(model, tokenizer, Path(folder))


def is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config")


def chat_prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a chat prompt that ends with the assistant turn's opening."""
    texts = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(texts, add_special_tokens=False)["input_ids"])


def split_prefix(seqs: Sequence[Sequence[int]]) -> tuple[list[int], list[list[int]]]:
    """(the longest common prefix of ``seqs``, each remainder); every remainder keeps at least one token."""
    from r2bench.r2rank.shared_prefix import split_prefix as _split

    return _split(seqs)


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int, device: Any, left: bool):
    from r2bench.r2rank.kvcache import pad_rows as _pad

    return _pad(rows, pad_id, device, left)


def prefix_forward(model: Any, prefix_ids: Sequence[int], ids: Any, attention_mask: Any) -> Any:
    """Last-layer hidden states ``[n, W, H]`` of rows that continue ``prefix_ids`` (the prefix encoded once;
    gradients flow back into it when called outside ``no_grad``)."""
    from r2bench.r2rank.shared_prefix import prefix_forward as _fwd

    return _fwd(model, prefix_ids, ids, attention_mask)


def truncate_words(text: Any, max_words: int) -> str:
    from r2bench.r2rank.prompts import truncate_words as _trunc

    return _trunc(text, max_words)


def lora_config(lora: Any, **extra: Any) -> Any:
    """A ``peft.LoraConfig`` from LoRA settings (``lora_r``, ``lora_alpha``, ``lora_dropout``, ``lora_targets``)."""
    from r2bench.extras import require

    peft = require("peft", purpose="LoRA training")
    targets: Any = lora.lora_targets
    if targets != "all-linear":
        targets = [t.strip() for t in str(targets).split(",") if t.strip()]
    return peft.LoraConfig(r=lora.lora_r, lora_alpha=lora.lora_alpha, lora_dropout=lora.lora_dropout,
                           target_modules=targets, task_type="CAUSAL_LM", **extra)


def peak_memory_mb() -> float:
    """Peak resident memory of this process (MB; the CPU figure)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
