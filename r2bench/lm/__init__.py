"""The shared LLM layer: what every LLM-based method (R2Rank, TALLRec, Prompt4NR, R2ec...) builds on.

It sits below both ``r2bench/r2rank/`` and ``baselines/`` (``tests/core/test_import_graph.py``
keeps it so, and keeps every module under ``baselines/`` from importing ``r2bench.r2rank``):

- ``backbones``: resolution, the one-time SmolLM2 conversion, loading for inference or
  training (full fine-tuning or LoRA through peft), device and dtype;
- ``prompts``: the user context and item rendering every LLM method shows, and the
  paper's Figure 2 template (shared by R2Rank and the zero-shot ``llm-reflective``
  baseline; its docstring says why it lives here);
- ``kvcache``, ``shared_prefix``: the shared-prefix KV-cache layout for inference and the
  same prefix sharing with gradients for training;
- ``generation``: chat prompt encoding and the hand-written decoding loop on the shared
  prefix (the reference and test path; serving engines do the same behind an endpoint);
- ``policy``: the policy module (``Policy``: the LM and an optional head, one ``forward`` for
  the shared-prefix pass, the decision states, the head's scores, the response log-probs
  and answer-word logits) and its batch (``PolicyBatch``); every trainer trains through it;
- ``examples``: prompt + response examples and the response-only token loss (SFT, TALLRec);
- ``engine``: accelerate as the training engine (DDP, DeepSpeed ZeRO, FSDP2), the sharding of
  users over processes with equal passes on every process;
- ``checkpoints``: resumable checkpoints, the policy's safetensors export and training logs.

Only ``prompts`` is light; the other modules import torch/transformers.
"""
