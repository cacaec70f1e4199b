"""A tiny random Llama and a tokenizer that knows the trainable baselines' words (no download)."""

from __future__ import annotations

WORDS = ("Gold Silver Jade Iron film Genre"
         " related unrelated boring interesting no yes bad good choice click user movie item"
         " Summarize key attributes of the following inside <answer> and </answer> Analyze in depth"
         " recommend next I might watch Below is my historical ratings out of 5 ago Title genre Gold")


def tiny_lm(bench, seed: int = 0, extra: tuple[str, ...] = ()):
    """(model, tokenizer): the R2Rank tests' tiny Llama, its BPE also trained on the baselines' words."""
    from tests.r2rank.test_training import make_tiny_lm, prompt_texts

    model, tok = make_tiny_lm(prompt_texts(bench) + [WORDS] * 30 + list(extra), seed=seed)
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tok


TRIBES = ("Gold", "Silver", "Jade", "Iron")


def tribes_benchmark(out, n_users: int = 160, per_tribe: int = 16, n_candidates: int = 10, seed: int = 0):
    """A benchmark whose signal a two-tower model can learn: every user watches films of one tribe only
    (the tribe is in the title and in a genre field), so the target shares the history's tribe while
    about three quarters of the negatives do not."""
    import numpy as np
    import polars as pl

    from r2bench.data.build import BuildSpec, build_benchmark
    from r2bench.data.store import write_benchmark

    rng = np.random.default_rng(seed)
    n_items = per_tribe * len(TRIBES)
    tribe_of = [j % len(TRIBES) for j in range(n_items)]
    ids = [f"i{j:03d}" for j in range(n_items)]
    items = pl.DataFrame({"item_id": ids, "title": [f"{TRIBES[tribe_of[j]]} film {j}" for j in range(n_items)],
                          "genre": [TRIBES[t] for t in tribe_of]})
    u, it, ts = [], [], []
    for k in range(n_users):
        tribe = k % len(TRIBES)
        own = [j for j in range(n_items) if tribe_of[j] == tribe]
        for t, j in enumerate(rng.choice(own, size=int(rng.integers(3, 6)), replace=False).tolist()):
            u.append(f"u{k:03d}")
            it.append(ids[j])
            ts.append(1_640_995_200_000 + t * 86_400_000)
    inter = pl.DataFrame({"user_id": u, "item_id": it, "timestamp": ts, "rating": [4.0] * len(u)},
                         schema={"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64, "rating": pl.Float64})
    spec = BuildSpec(seed=seed, history_len=3, n_candidates=n_candidates, split_ratios=(0.6, 0.1, 0.3))
    return write_benchmark(build_benchmark("tribes", inter, items, spec, source={"name": "tribes"}), out)
