"""R2Rank, the reference model: the scoring head, shared-prefix inference with its decision step,
Plackett-Luce, the PPO loss, the RL step, SFT and its data synthesis.

What every LLM method shares (backbones, the user-context rendering and the Figure 2 template, the
shared-prefix forward and KV cache, decoding, checkpoints) is in :mod:`r2bench.lm`.
"""
