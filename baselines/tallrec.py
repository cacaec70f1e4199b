"""TALLRec (Bao et al. 2023) on the shared LLM layer (``r2bench.lm``): LoRA-tuned Yes/No relevance.

As in the paper's protocol (section 4.1.3), TALLRec is trained on the same backbone
as R2Rank: LoRA fine-tuning of the causal LM on (user context, candidate) ->
``Yes`` / ``No`` built from train instances (each instance's positive and
``negatives_per_positive`` of its other candidates, seeded), with the loss on the
answer tokens only (``r2bench.lm.examples``). The user context is exactly the one the
R2Rank prompts show (profile + history, ``r2bench.lm.prompts``); only the
instruction differs: TALLRec asks for a one-word answer. The score of a candidate is
``logit(Yes) - logit(No)`` of the first answer token.

An instance's examples differ only in the candidate (last in the prompt), so both
fitting and scoring encode the instance's common prompt prefix once and share its
KV cache (``r2bench.lm.shared_prefix``; gradients flow back through it): a
batch packs whole instances, and one forward + backward pass per instance covers
its positive and all its negatives.

Checkpoints are the same format as R2Rank's: a peft adapter folder (safetensors)
plus the tokenizer, written to ``save_to`` (or a temporary folder); ``checkpoint``
scores with a saved adapter (or merged model folder) without fitting.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import polars as pl

from r2bench.lm.backbones import LoRASettings
from r2bench.methods import BaseMethod

log = logging.getLogger(__name__)

@dataclass
class TALLRecConfig(LoRASettings):
    """TALLRec (Bao et al. 2023): (user context, candidate) -> Yes/No, LoRA on the same backbone."""

    backbone: str = "smollm2-135m"
    lora_r: int = 8
    #: train instances used (0 = all), each giving its positive and ``negatives_per_positive`` negatives
    max_instances: int = 256
    negatives_per_positive: int = 1
    epochs: int = 1
    #: examples per optimiser step (whole instances are packed until a batch has at least this many)
    batch_size: int = 8
    lr: float = 3e-4
    max_length: int = 1024
    grad_clip: float = 1.0
    #: a trained TALLRec folder (adapter or merged model) to score with instead of fitting
    checkpoint: str | None = None
    #: where fit() saves its checkpoint (none = a temporary folder)
    save_to: str | None = None
    score_batch: int = 20
    device: str = "auto"
    dtype: str = "auto"



INSTRUCTION = (
    "Given the user's history below, decide whether the user will like the candidate item. "
    'Answer with only "Yes" or "No".'
)
YES, NO = "Yes", "No"


def tallrec_messages(context: str, item_text: str) -> list[dict[str, str]]:
    """The TALLRec prompt: instruction, the R2Rank user context, the candidate (last)."""
    return [{"role": "user", "content": f"{INSTRUCTION}\n\n{context}\n\nCandidate Item: {item_text}"}]


def _answer_ids(tokenizer) -> tuple[int, int]:
    yes = tokenizer(YES, add_special_tokens=False)["input_ids"]
    no = tokenizer(NO, add_special_tokens=False)["input_ids"]
    if not yes or not no or yes[0] == no[0]:
        from r2bench.errors import R2BenchError

        raise R2BenchError("the backbone's tokenizer cannot tell 'Yes' from 'No' by their first token")
    return int(yes[0]), int(no[0])


class TALLRecMethod(BaseMethod):
    name: ClassVar[str] = "tallrec"
    description: ClassVar[str] = "TALLRec: LoRA-tuned yes/no scoring on the same backbone"
    Config: ClassVar[type] = TALLRecConfig
    transferable: ClassVar[bool] = True
    pointwise: ClassVar[bool] = True

    def __init__(self, config: TALLRecConfig | None = None, seed: int = 0):
        super().__init__(config, seed)
        self.model: Any = None
        self.tokenizer: Any = None
        self.engine: Any = None
        self._info: dict[str, Any] = {}

    def set_model(self, model, tokenizer) -> None:
        """Start from an already loaded model (tests); LoRA is added by ``fit`` when ``lora_r > 0``."""
        self.model, self.tokenizer = model, tokenizer

    def set_engine(self, engine) -> None:
        """Train on this :class:`r2bench.lm.engine.Engine` (e.g. several processes under ``accelerate launch``)."""
        self.engine = engine

    # ---------------------------------------------------------------- data
    def _examples(self, benchmark) -> tuple[list[str], list[list[tuple[list[dict[str, str]], str]]]]:
        """Per train instance (a seeded sample): its user, and its positive and sampled negatives as (messages, answer)."""
        from r2bench.lm.prompts import instance_prompt
        from r2bench.stablehash import stable_rng as _stable_rng

        c = self.config
        rows = benchmark.split("train").to_dicts()
        order = _stable_rng(self.seed, "tallrec").permutation(len(rows))
        if c.max_instances:
            order = order[: c.max_instances]
        recs = benchmark.item_records()
        users, groups = [], []
        for i in order.tolist():
            row = rows[i]
            ip = instance_prompt(row, recs, benchmark.profile_fields)
            t = int(row["target_index"])
            others = [k for k in range(len(ip.candidates)) if k != t]
            rng = _stable_rng(self.seed, "tallrec-neg", int(row["instance_id"]))
            negs = rng.choice(others, size=min(c.negatives_per_positive, len(others)), replace=False).tolist()
            users.append(str(row["user_id"]))
            groups.append([(tallrec_messages(ip.context, ip.item_texts[k]), YES if k == t else NO) for k in [t] + negs])
        return users, groups

    @staticmethod
    def _batches(sizes: list[int], batch_size: int, order) -> list[list[int]]:
        """Whole instance groups (their indices) packed into batches of at least ``batch_size`` examples
        (the last may be short); ``sizes``: the examples of each group."""
        out, cur, n = [], [], 0
        for i in order:
            cur.append(int(i))
            n += sizes[i]
            if n >= batch_size:
                out.append(cur)
                cur, n = [], 0
        return out + ([cur] if cur else [])

    # ---------------------------------------------------------------- protocol
    def fit(self, benchmark) -> None:
        """LoRA (or full) fine-tuning on the Yes/No examples, on the accelerate engine through the policy module.

        Each optimiser step takes a global batch of whole instances (the same seeded packing on
        every process); each process runs one forward/backward pass per instance of its users,
        padded with zero-weight repeats to the same count on every process (``r2bench.lm.engine``),
        and the loss is the batch's mean answer-token cross-entropy."""
        import torch

        from r2bench.lm.backbones import load_backbone, load_policy
        from r2bench.lm.checkpoints import save_policy
        from r2bench.lm.engine import Engine
        from r2bench.lm.examples import encode_example, examples_batch
        from r2bench.lm.policy import Policy, response_nll
        from r2bench.progress import bar
        from r2bench.stablehash import hash_seed

        c = self.config
        if c.checkpoint:
            ck = Path(c.checkpoint)
            adapter = str(ck) if (ck / "adapter_config.json").is_file() else None
            self.model, self.tokenizer = load_backbone(c.backbone if adapter else str(ck), adapter=adapter,
                                                       device=c.device, dtype=c.dtype)
            self._info = {"checkpoint": str(ck), "fitted": False}
            return
        engine = self.engine if self.engine is not None else Engine()
        torch.manual_seed(hash_seed(self.seed, 3))  # the same LoRA initialisation on every process
        if self.model is None:
            self.model, self.tokenizer = load_policy(c.backbone, c, device=engine.model_device(c.device), dtype=c.dtype)
        elif c.lora_r == 0:
            for p in self.model.parameters():
                p.requires_grad_(True)
        elif not hasattr(self.model, "peft_config"):
            import peft

            self.model = peft.get_peft_model(self.model, peft.LoraConfig(
                r=c.lora_r, lora_alpha=c.lora_alpha, lora_dropout=c.lora_dropout,
                target_modules=c.lora_targets if c.lora_targets == "all-linear" else c.lora_targets.split(","),
                task_type="CAUSAL_LM"))
        _answer_ids(self.tokenizer)
        users, texts = self._examples(benchmark)
        groups = [[encode_example(self.tokenizer, m, a, c.max_length) for m, a in g] for g in texts]
        params = [p for p in self.model.parameters() if p.requires_grad]
        policy, opt = engine.prepare(Policy(self.model), torch.optim.AdamW(params, lr=c.lr), c.grad_clip)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        dev = self.model.get_output_embeddings().weight.device
        t0, losses = time.perf_counter(), []
        policy.train()
        sizes = [len(g) for g in groups]
        plan = [self._batches(sizes, c.batch_size, np.random.default_rng(hash_seed(self.seed, e, 5)).permutation(len(groups)))
                for e in range(c.epochs)]
        n_batches = sum(len(p) for p in plan)
        with bar(total=n_batches, desc="TALLRec fit", unit="batch", disable=not engine.is_main) as b:
            for batches in plan:
                for batch in batches:
                    # mean over the global batch's answer tokens; one pass per instance (shared prefix)
                    n_tok = sum(len(seq) - n_prompt for g in batch for seq, n_prompt in groups[g])
                    shard = engine.shard([users[g] for g in batch])
                    total = 0.0
                    for j, (item, w) in enumerate(zip(shard.items, shard.weights)):
                        with engine.micro_step(policy, last=j == len(shard.items) - 1):
                            pb = examples_batch(groups[batch[item]], pad, dev)
                            loss_sum, _ = response_nll(policy(pb), pb)
                            engine.backward(loss_sum * (w * engine.world_size / n_tok))
                        total += w * float(loss_sum.detach())
                    engine.step(policy, opt, c.grad_clip)
                    losses.append(engine.sum([total])[0] / n_tok)
                    b.update(1)
                    b.set_postfix(loss=f"{losses[-1]:.3f}")
        policy.eval()
        self.model.eval()
        save_to = Path(c.save_to) if c.save_to else Path(tempfile.mkdtemp(prefix="tallrec-"))
        if engine.is_main:
            save_policy(self.model, self.tokenizer, save_to)
        engine.barrier()
        self._info = {"fitted": True, "train_examples": sum(sizes), "train_instances": len(groups),
                      "fit_loss_first": losses[0] if losses else None,
                      "fit_loss_last": float(np.mean(losses[-max(1, n_batches // 4):])) if losses else None,
                      "fit_batches": n_batches, "processes": engine.world_size,
                      "fit_s": time.perf_counter() - t0, "checkpoint": str(save_to)}

    def score(self, benchmark, instances: pl.DataFrame) -> np.ndarray:
        import torch

        from r2bench.progress import bar
        from r2bench.lm.generation import chat_prompt_ids
        from r2bench.lm.policy import Policy, last_position_batch
        from r2bench.lm.prompts import instance_prompt

        if self.model is None:
            self.fit(benchmark)
        yes, no = _answer_ids(self.tokenizer)
        recs = benchmark.item_records()
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        dev = self.model.get_output_embeddings().weight.device
        policy = Policy(self.model)
        out = np.zeros((instances.height, benchmark.k), dtype=np.float64)
        with bar(total=instances.height, desc="TALLRec score", unit="inst") as b, torch.no_grad():
            for i, row in enumerate(instances.iter_rows(named=True)):
                ip = instance_prompt(row, recs, benchmark.profile_fields)
                prompts = [chat_prompt_ids(self.tokenizer, tallrec_messages(ip.context, t)) for t in ip.item_texts]
                for s in range(0, len(prompts), self.config.score_batch):
                    chunk = prompts[s:s + self.config.score_batch]  # the answer word's logits at each last token
                    logits = policy(last_position_batch(chunk, pad, dev, vocab_ids=[yes, no], decisions=False)).vocab_logits
                    out[i, s:s + len(chunk)] = (logits[:, 0] - logits[:, 1]).cpu().numpy()
                b.update(1)
        return out

    def info(self) -> dict[str, Any]:
        return {"backbone": self.config.backbone, **self._info}
