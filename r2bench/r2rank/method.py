"""``r2rank``: Reasoning to Rank as an r2bench method (inference; training is ``r2bench.r2rank`` part 2).

Each candidate is scored independently: the backbone writes a self-reflective
reasoning for (user context, candidate) and the scoring head maps the hidden state
at the decision position to a score (the zero-shot margin when no head is given).
The 20 prompts of an instance share the user context, which is encoded once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import polars as pl

from r2bench.llm.config import ClientConfig
from r2bench.methods import BaseMethod

log = logging.getLogger(__name__)


@dataclass
class R2RankConfig(ClientConfig):
    """Settings of ``r2rank`` (``--set key=value``).

    ``max_reasoning_tokens`` defaults to 64: on a 2-core CPU with SmolLM2 that keeps
    an instance (20 candidates) around half a minute; the paper's reasonings are far
    longer (use 512+ on a GPU). ``head``: ``auto`` (a ``head.safetensors`` next to the
    adapter or backbone, else zero-shot), ``none`` (zero-shot margin) or a path.
    ``no_cot``: ask for the decision directly and skip generation (ablation).
    ``threads``: torch CPU threads (0 = torch's default); on a busy shared CPU, 1 is
    often several times faster than 2 (no spin-waiting between oversubscribed threads).

    ``generator``: ``hf`` decodes with the local model; ``openai`` asks an
    OpenAI-compatible completions endpoint (``base_url``, ``model`` = the served name,
    ``concurrency``, ``cache``... : the LLM client's settings, inherited) for the
    reasonings and computes the decision locally (``r2bench.r2rank.remote``).
    ``server_token_ids``: send the prompt as token ids and ask for the generated ids
    (vLLM), instead of text re-tokenized locally. ``instances_per_batch``: instances
    decoded (or, with ``openai``, decided) together; 0 = automatic, 1 on CPU and as
    many as fit on a GPU (``r2bench.r2rank.memory``). ``batch_size``: rows of one
    instance decoded together (lower it for big models on small GPUs).
    """

    #: ``smollm2-135m`` (the packaged GGUF, converted once), a folder in $R2BENCH_HOME/models, or a path
    #: to a local Hugging Face causal-LM folder with a chat template
    backbone: str = "smollm2-135m"
    #: a peft LoRA adapter folder, merged for inference
    adapter: str | None = None
    #: ``auto`` (a head.safetensors next to the adapter or backbone, else zero-shot), ``none`` (the
    #: zero-shot margin log P(Recommend) - log P(Not Recommend)) or a path to a head file
    head: str = "auto"
    #: longest reasoning per candidate, in tokens (64 suits a CPU; use 512+ on a GPU)
    max_reasoning_tokens: int = 64
    #: sample the reasonings instead of greedy decoding
    do_sample: bool = False
    #: sampling temperature (with ``do_sample``)
    temperature: float = 0.7
    #: nucleus sampling (with ``do_sample``)
    top_p: float | None = 0.95
    #: rows (candidates) of one instance decoded together; lower it for big models on small GPUs
    batch_size: int = 20
    #: instances decoded together; 0 = automatic: 1 on a CPU, as many as fit on a GPU
    instances_per_batch: int = 0
    #: encode the instance's common prompt prefix once and reuse its KV cache (same scores, faster)
    shared_prefix: bool = True
    #: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:N``
    device: str = "auto"
    #: ``auto`` (bfloat16 on CUDA, float16 without bf16 support, float32 on CPU), ``float32``, ``bfloat16``, ``float16``
    dtype: str = "auto"
    #: the transformers attention implementation (``sdpa``, ``eager``, ...)
    attn_implementation: str = "sdpa"
    #: ask for the decision directly and skip the reasoning (ablation)
    no_cot: bool = False
    #: torch CPU threads (0 = torch's default); on a busy shared CPU 1 is often faster than 2
    threads: int = 0
    #: who writes the reasonings: the local model (``hf``) or an OpenAI-compatible completions
    #: endpoint (``openai``: base_url, model, ... from the LLM client settings); the decision is local
    generator: Literal["hf", "openai"] = "hf"
    #: with ``generator=openai``: send prompt token ids and read generated ids (vLLM) instead of text
    server_token_ids: bool = False


def _clamped(pbar: Any):
    """``pbar.update`` that never passes the total (fractional credits add up with float rounding)."""
    def update(n: float) -> None:
        pbar.update(max(0.0, min(float(n), pbar.total - pbar.n)))
    return update


@dataclass
class _Counts:
    """What one ``score`` call accumulates for ``info()``."""

    tokens: int = 0
    finished: int = 0
    malformed: int = 0
    nonfinite: int = 0
    server_ids: int = 0
    prompt_lens: list = field(default_factory=list)


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
        self._llm: Any = None

    # ------------------------------------------------------------------ model
    def load(self) -> None:
        """Load backbone, adapter and head (once)."""
        if self.model is not None:
            return
        from r2bench.errors import R2BenchError
        from r2bench.lm.backbones import load_backbone, resolve_backbone
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
        from r2bench.lm.backbones import prepare_tokenizer

        self.model, self.tokenizer, self.head = model, prepare_tokenizer(tokenizer), head

    # ------------------------------------------------------------------ protocol
    def fit(self, benchmark: Any) -> None:
        return None  # zero-shot / pre-trained; training lives in the R2Rank training commands

    def _client(self) -> Any:
        from r2bench.extras import require

        require("openai", purpose="r2rank with generator=openai")
        from r2bench.llm.client import LLMClient

        if self._llm is None:
            from r2bench.r2rank.digests import served_weights_scope, weights_digest

            c = self.config
            scope = served_weights_scope(weights_digest(self._backbone_path),
                                         weights_digest(c.adapter) if c.adapter else None)
            self._llm = LLMClient(c, seed=self.seed, allow_partial=True, cache_scope=scope)
        return self._llm

    def _announce(self, n_inst: int, k: int, prompt_tokens: int) -> None:
        """Say before starting what the settings will cost (issue: a slow run must not look hung)."""
        c = self.config
        dev = self.model.get_output_embeddings().weight.device
        n = n_inst * k
        if c.no_cot:
            work = f"{n} candidates, decision only"
        elif c.generator == "openai":
            work = f"{n} reasonings of up to {c.max_reasoning_tokens} tokens from {c.base_url}"
        else:
            work = f"{n} reasonings of up to {c.max_reasoning_tokens} tokens ({n * c.max_reasoning_tokens:,} tokens to generate)"
        log.info("r2rank: %d instances x %d candidates = %s; prompts of about %d tokens, on %s",
                 n_inst, k, work, prompt_tokens, dev)
        if dev.type == "cpu" and c.generator == "hf" and not c.no_cot:
            log.info("r2rank: generating on a CPU is slow (SmolLM2-135M scored 0.75 candidates/s with 8 reasoning "
                     "tokens on a busy 2-core box); the settings of docs/r2rank/inference.md, 'R2Rank on a CPU', keep it practical (--limit N, "
                     "--set max_reasoning_tokens=8, --set threads=1); an estimate follows the first instance")

    def score(self, benchmark: Any, instances: pl.DataFrame) -> np.ndarray:
        import torch

        from r2bench.progress import bar
        from r2bench.lm.generation import encode_prompts
        from r2bench.r2rank.memory import auto_instances_per_batch
        from r2bench.lm.prompts import instance_prompt

        self.load()
        c = self.config
        records = benchmark.item_records()
        dev = self.model.get_output_embeddings().weight.device
        gen = torch.Generator(device=dev).manual_seed(int(self.seed))
        torch.manual_seed(int(self.seed))
        rows = list(instances.iter_rows(named=True))
        k = max((len(r["candidates"]) for r in rows), default=0)
        out = np.zeros((len(rows), k), dtype=np.float64)
        if not rows:
            return out
        prompts = [instance_prompt(r, records, benchmark.profile_fields, no_cot=c.no_cot) for r in rows]
        first = encode_prompts(self.tokenizer, prompts[0].all_messages())
        max_new = 0 if c.no_cot else c.max_reasoning_tokens
        ipb = auto_instances_per_batch(self.model, max(len(x) for x in first), len(first), max_new, len(rows),
                                       c.instances_per_batch)
        self._announce(len(rows), k, int(np.mean([len(x) for x in first])))
        chunk = ipb
        if c.generator == "openai" and not c.no_cot:  # enough requests in flight for the server's concurrency
            chunk = max(ipb, -(-2 * max(1, c.concurrency) // max(k, 1)))
        acc = _Counts()
        t0 = time.perf_counter()
        fmt = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total_fmt} cand [{elapsed}<{remaining}, {rate_fmt}]"
        with bar(total=len(rows) * k, desc="r2rank", unit="cand", bar_format=fmt) as pbar:
            for s0 in range(0, len(rows), chunk):
                part = prompts[s0:s0 + chunk]
                ids = [first if s0 + j == 0 else encode_prompts(self.tokenizer, p.all_messages())
                       for j, p in enumerate(part)]
                decided = self._score_chunk(part, ids, ipb, gen, _clamped(pbar), acc)
                for j, (p, (reasonings, _, margin, score)) in enumerate(zip(part, decided)):
                    self._record(int(rows[s0 + j]["instance_id"]), p, reasonings, margin, score, out[s0 + j], acc)
                    acc.prompt_lens.extend(len(x) for x in ids[j])
                if s0 == 0 and len(rows) > chunk:
                    dt = time.perf_counter() - t0
                    log.info("r2rank: the first %d candidates took %.1f s; about %.1f min for all %d",
                             len(part) * k, dt, dt * len(rows) / len(part) / 60, len(rows) * k)
        self._finish(len(rows) * k, time.perf_counter() - t0, ipb, acc)
        return out

    def _score_chunk(self, part: list, ids: list, ipb: int, gen: Any, update: Any, acc: "_Counts") -> list:
        from r2bench.r2rank.inference import decide_instances, reason_and_decide_instances

        c = self.config
        top_p = c.top_p if c.top_p is not None else 1.0
        if c.generator == "openai" and not c.no_cot:
            from r2bench.r2rank.remote import remote_reasonings, server_ids

            reasonings, calls = remote_reasonings(
                self._client(), self.tokenizer, [p.all_messages() for p in part], ids,
                max_tokens=c.max_reasoning_tokens, do_sample=c.do_sample, temperature=c.temperature, top_p=top_p,
                server_token_ids=c.server_token_ids, on_progress=lambda n: update(0.9 * n),
            )
            acc.server_ids += sum(1 for cs in calls for r in cs if server_ids(r) is not None)
            return decide_instances(self.model, self.tokenizer, ids, reasonings, head=self.head,
                                    shared_prefix=c.shared_prefix, batch_size=c.batch_size,
                                    instances_per_batch=ipb, progress=lambda n: update(0.1 * n))
        return reason_and_decide_instances(
            self.model, self.tokenizer, ids, head=self.head, max_new_tokens=0 if c.no_cot else c.max_reasoning_tokens,
            do_sample=c.do_sample, temperature=c.temperature, top_p=top_p, generator=gen,
            shared_prefix=c.shared_prefix, batch_size=c.batch_size, instances_per_batch=ipb, progress=update,
        )

    def _record(self, instance_id: int, prompt: Any, reasonings: list, margin: Any, score: Any,
                out_row: np.ndarray, acc: "_Counts") -> None:
        for j, (item, r, m, s) in enumerate(zip(prompt.candidates, reasonings, margin.tolist(), score.tolist())):
            if not np.isfinite(s):
                acc.nonfinite += 1
                s = -1e9
            out_row[j] = s
            acc.tokens += len(r.token_ids)
            acc.finished += int(r.finished)
            acc.malformed += int(r.decision is None)
            self._rationales.append({
                "instance_id": instance_id, "item_id": str(item), "text": r.text, "finished": bool(r.finished),
                "n_tokens": len(r.token_ids), "decision": r.decision, "score": float(s), "margin": float(m),
            })

    def _finish(self, n: int, elapsed: float, ipb: int, acc: "_Counts") -> None:
        c = self.config
        prev = self._stats
        self._stats = {
            "backbone": c.backbone, "backbone_path": self._backbone_path, "adapter": c.adapter,
            "head": self._head_path or "zero-shot margin logP(Recommend) - logP(Not Recommend)",
            "generator": c.generator, "instances_per_batch": ipb,
            "candidates_scored": prev.get("candidates_scored", 0) + n,
            "reasoning_tokens": prev.get("reasoning_tokens", 0) + acc.tokens,
            "finished": prev.get("finished", 0) + acc.finished,
            "unfinished": prev.get("unfinished", 0) + (0 if c.no_cot else n - acc.finished),
            "malformed": prev.get("malformed", 0) + (0 if c.no_cot else acc.malformed),
            "nonfinite_scores": prev.get("nonfinite_scores", 0) + acc.nonfinite,
            "mean_prompt_tokens": float(np.mean(acc.prompt_lens)) if acc.prompt_lens else 0.0,
            "candidates_per_s": n / elapsed if elapsed > 0 else None,
            "generated_tokens_per_s": acc.tokens / elapsed if elapsed > 0 else None,
        }
        if self._llm is not None:
            self._stats["llm"] = self._llm.usage()
            self._stats["token_ids_from_server"] = prev.get("token_ids_from_server", 0) + acc.server_ids
        if not c.no_cot and n - acc.finished:
            log.warning(
                "r2rank: %d of %d reasonings did not reach </answer> within %d tokens (scored at a forced <answer>)",
                n - acc.finished, n, c.max_reasoning_tokens,
            )

    def artifacts(self) -> dict[str, pl.DataFrame]:
        schema = {"instance_id": pl.Int64, "item_id": pl.String, "text": pl.String, "finished": pl.Boolean,
                  "n_tokens": pl.Int64, "decision": pl.String, "score": pl.Float64, "margin": pl.Float64}
        return {"rationales": pl.DataFrame(self._rationales, schema=schema)}

    def info(self) -> dict[str, Any]:
        return dict(self._stats)
