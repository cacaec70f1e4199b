"""R2Rank, the reference model: prompts, backbones, scoring head, shared-prefix inference.

Only ``prompts`` is light; the other modules import torch/transformers.
"""
