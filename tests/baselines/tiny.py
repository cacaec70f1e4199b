"""A tiny random Llama and a tokenizer that knows the trainable baselines' words (no download)."""

from __future__ import annotations

WORDS = (" related unrelated boring interesting no yes bad good choice click user movie item"
         " Summarize key attributes of the following inside <answer> and </answer> Analyze in depth"
         " recommend next I might watch Below is my historical ratings out of 5 ago Title genre Gold")


def tiny_lm(bench, seed: int = 0, extra: tuple[str, ...] = ()):
    """(model, tokenizer): the R2Rank tests' tiny Llama, its BPE also trained on the baselines' words."""
    from tests.r2rank.test_training import make_tiny_lm, prompt_texts

    model, tok = make_tiny_lm(prompt_texts(bench) + [WORDS] * 30 + list(extra), seed=seed)
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tok
