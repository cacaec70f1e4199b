"""``r2rank``: Reasoning to Rank as an r2bench method (inference; training is ``r2bench.r2rank`` part 2).

Each candidate is scored independently: the backbone writes a self-reflective
reasoning for (user context, candidate) and the scoring head maps the hidden state
at the decision position to a score (the zero-shot margin when no head is given).
The 20 prompts of an instance share the user context, which is encoded once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import polars as pl

from r2bench.methods import BaseMethod

log = logging.getLogger(__name__)


@dataclass
class R2RankConfig:
    """Settings of ``r2rank`` (``--set key=value``).

    ``max_reasoning_tokens`` defaults to 64: on a 2-core CPU with SmolLM2 that keeps
    an instance (20 candidates) around half a minute; the paper's reasonings are far
    longer (use 512+ on a GPU). ``head``: ``auto`` (a ``head.safetensors`` next to the
    adapter or backbone, else zero-shot), ``none`` (zero-shot margin) or a path.
    ``no_cot``: ask for the decision directly and skip generation (ablation).
    ``threads``: torch CPU threads (0 = torch's default); on a busy shared CPU, 1 is
    often several times faster than 2 (no spin-waiting between oversubscribed threads).
    """

    backbone: str = "smollm2-135m"
    adapter: str | None = None
    head: str = "auto"
    max_reasoning_tokens: int = 64
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.95
    batch_size: int = 20
    shared_prefix: bool = True
    device: str = "auto"
    dtype: str = "auto"
    attn_implementation: str = "sdpa"
    no_cot: bool = False
    threads: int = 0


class R2RankMethod(BaseMethod):
    name: ClassVar[str] = "r2rank"
    description: ClassVar[str] = "Reasoning to Rank: per-candidate reasoning + scoring head (local HF causal LM)"
    Config: ClassVar[type] = R2RankConfig
    transferable: ClassVar[bool] = True
    pointwise: ClassVar[bool] = True

    def __init__(self, config: R2RankConfig | None = None, seed: int = 0):
        super().__init__(config, seed)
        self.model: Any = None
        self.tokenizer: Any = None
        self.head: Any = None
        self._head_path: str | None = None
        self._backbone_path: str | None = None
        self._rationales: list[dict[str, Any]] = []
        self._stats: dict[str, Any] = {}

    # ------------------------------------------------------------------ model
    def load(self) -> None:
        """Load backbone, adapter and head (once)."""
        if self.model is not None:
            return
        from r2bench.errors import R2BenchError
        from r2bench.r2rank.backbones import load_backbone, resolve_backbone
        from r2bench.r2rank.head import ScoringHead, find_head

        c = self.config
        if c.threads > 0:
            import torch

            torch.set_num_threads(int(c.threads))
        folder = resolve_backbone(c.backbone)
        self._backbone_path = str(folder)
        self.model, self.tokenizer = load_backbone(
            str(folder), adapter=c.adapter, device=c.device, dtype=c.dtype,
            attn_implementation=c.attn_implementation or None,
        )
        head_path = find_head(c.head, c.adapter, folder)
        if head_path is not None:
            dev = self.model.get_output_embeddings().weight.device
            self.head = ScoringHead.load(head_path, device=dev)
            hidden = self.model.config.get_text_config().hidden_size
            if self.head.hidden_size != hidden:
                raise R2BenchError(
                    f"head {head_path} expects hidden size {self.head.hidden_size}, backbone has {hidden}"
                )
            self._head_path = str(head_path)

    def set_model(self, model: Any, tokenizer: Any, head: Any = None) -> None:
        """Use an already loaded model (training code, tests)."""
        from r2bench.r2rank.backbones import prepare_tokenizer

        self.model, self.tokenizer, self.head = model, prepare_tokenizer(tokenizer), head

    # ------------------------------------------------------------------ protocol
    def fit(self, benchmark: Any) -> None:
        return None  # zero-shot / pre-trained; training lives in the R2Rank training commands

    def score(self, benchmark: Any, instances: pl.DataFrame) -> np.ndarray:
        import torch

        from r2bench.progress import bar
        from r2bench.r2rank.inference import encode_prompts, score_prompts
        from r2bench.r2rank.prompts import instance_prompt

        self.load()
        c = self.config
        records = benchmark.item_records()
        profile_fields = benchmark.profile_fields
        dev = self.model.get_output_embeddings().weight.device
        gen = torch.Generator(device=dev).manual_seed(int(self.seed))
        torch.manual_seed(int(self.seed))
        rows = list(instances.iter_rows(named=True))
        k = max((len(r["candidates"]) for r in rows), default=0)
        out = np.zeros((len(rows), k), dtype=np.float64)
        n_tok = n_fin = n_malformed = n_nonfinite = 0
        prompt_lens: list[int] = []
        t0 = time.perf_counter()
        with bar(total=len(rows) * k, desc="r2rank", unit="cand") as pbar:
            for i, row in enumerate(rows):
                prompt = instance_prompt(row, records, profile_fields, no_cot=c.no_cot)
                ids = encode_prompts(self.tokenizer, prompt.all_messages())
                prompt_lens.extend(len(x) for x in ids)
                results = score_prompts(
                    self.model, self.tokenizer, ids, head=self.head,
                    max_new_tokens=0 if c.no_cot else c.max_reasoning_tokens,
                    do_sample=c.do_sample, temperature=c.temperature, top_p=c.top_p, generator=gen,
                    shared_prefix=c.shared_prefix, batch_size=c.batch_size,
                )
                for j, (item, res) in enumerate(zip(prompt.candidates, results)):
                    s = res.score
                    if not np.isfinite(s):
                        n_nonfinite += 1
                        s = -1e9
                    out[i, j] = s
                    r = res.reasoning
                    n_tok += len(r.token_ids)
                    n_fin += int(r.finished)
                    n_malformed += int(r.decision is None)
                    self._rationales.append({
                        "instance_id": int(row["instance_id"]), "item_id": str(item), "text": r.text,
                        "finished": bool(r.finished), "n_tokens": len(r.token_ids),
                        "decision": r.decision, "score": float(s), "margin": float(res.margin),
                    })
                pbar.update(len(results))
        elapsed = time.perf_counter() - t0
        n = len(rows) * k
        prev = self._stats
        self._stats = {
            "backbone": c.backbone, "backbone_path": self._backbone_path, "adapter": c.adapter,
            "head": self._head_path or "zero-shot margin logP(Recommend) - logP(Not Recommend)",
            "candidates_scored": prev.get("candidates_scored", 0) + n,
            "reasoning_tokens": prev.get("reasoning_tokens", 0) + n_tok,
            "finished": prev.get("finished", 0) + n_fin,
            "unfinished": prev.get("unfinished", 0) + (0 if c.no_cot else n - n_fin),
            "malformed": prev.get("malformed", 0) + (0 if c.no_cot else n_malformed),
            "nonfinite_scores": prev.get("nonfinite_scores", 0) + n_nonfinite,
            "mean_prompt_tokens": float(np.mean(prompt_lens)) if prompt_lens else 0.0,
            "candidates_per_s": n / elapsed if elapsed > 0 else None,
        }
        if not c.no_cot and n - n_fin:
            log.warning(
                "r2rank: %d of %d reasonings did not reach </answer> within %d tokens (scored at a forced <answer>)",
                n - n_fin, n, c.max_reasoning_tokens,
            )
        return out

    def artifacts(self) -> dict[str, pl.DataFrame]:
        schema = {"instance_id": pl.Int64, "item_id": pl.String, "text": pl.String, "finished": pl.Boolean,
                  "n_tokens": pl.Int64, "decision": pl.String, "score": pl.Float64, "margin": pl.Float64}
        return {"rationales": pl.DataFrame(self._rationales, schema=schema)}

    def info(self) -> dict[str, Any]:
        return dict(self._stats)
