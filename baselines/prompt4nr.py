"""Prompt4NR (Zhang & Wang, SIGIR 2023) as a trainable baseline on the shared backbone.

A prompt-learning recommender: the (user, candidate) pair is written into a cloze
template whose answer word says whether the user wants the candidate (``related`` /
``unrelated``, ``interesting`` / ``boring``, ``yes`` / ``no``, ``good`` / ``bad``), and
the LM is fine-tuned so that the right word wins. Templates and their decoder-only
form are in :mod:`baselines.prompt4nr_templates`.

- **Objective** (released ``model.py``): a 2-way cross-entropy over the two answer
  words' logits at the answer position, ``CE([l_neg, l_pos], label)``; no other logit
  of the vocabulary enters the loss.
- **Score**: ``l_pos - l_neg`` (the released test score ``softmax([l_neg, l_pos])[1]``
  is a monotone function of it, so the ranking is the same).
- **Training** (released ``main-multigpu.py``/``run.sh``): every train instance gives
  its positive and ``negatives_per_positive`` (4) negatives sampled from its other
  candidates as separate pointwise examples; AdamW; ``epochs`` epochs; the epoch with
  the best held-out NDCG@10 on the val split is kept.
- **Continuous / hybrid forms**: the learned prompt tokens ``[P1..]``, ``[Q1..]``,
  ``[M1..]`` and the separator ``[NSEP]`` are new rows of the backbone's vocabulary,
  trained with the model (peft ``trainable_token_indices`` next to the LoRA matrices;
  with ``lora_r=0`` everything trains, as in the released full fine-tuning of BERT).
- **Shared prefix**: the user part comes first, so an instance's 20 prompts (or its
  5 training examples) share it as a token prefix, encoded once per forward pass.
- **Engine**: training runs on the accelerate engine (``r2bench.lm.engine``) through the
  policy module (``r2bench.lm.policy.Policy``: the answer words' logits are its
  ``vocab_logits``): an optimiser step takes a global batch of whole instances (the same
  seeded packing on every process), each process runs one forward/backward pass per
  instance of its users (padded with zero-weight repeats to the same count everywhere),
  and the loss is the batch's mean example cross-entropy, as in one process.

Saved model (``save_to``, or a temporary folder): a peft adapter folder (safetensors;
LoRA and the new token rows) or a full model folder, the tokenizer with its new
tokens, and ``prompt4nr.json`` (the template it was trained with). ``adapter=<folder>``
scores with it without training.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import polars as pl

from r2bench.methods import BaseMethod

log = logging.getLogger(__name__)

META_FILE = "prompt4nr.json"
#: settings that shape the prompts: a trained folder's values replace the config's when it is loaded
TEXT_SETTINGS = ("item_text", "history_items", "history_title_words", "candidate_title_words", "max_user_tokens")


@dataclass
class Prompt4NRConfig:
    """Settings of ``prompt4nr`` (``--set key=value``)."""

    #: backbone name or Hugging Face folder (the shared backbone of R2Rank and TALLRec)
    backbone: str = "smollm2-135m"
    #: a trained Prompt4NR folder (what fit writes to save_to): score with it instead of training
    adapter: str | None = None
    #: template family: relevance (unrelated/related), emotion (boring/interesting), action (no/yes), utility (bad/good)
    template: Literal["relevance", "emotion", "action", "utility"] = "relevance"
    #: discrete (words only), continuous (learned tokens around every part) or hybrid (learned tokens + a word cue)
    form: Literal["discrete", "continuous", "hybrid"] = "discrete"
    #: learned prompt tokens per part in the continuous/hybrid forms (released: 3)
    n_prompt_tokens: int = 3
    #: "neg,pos" answer words replacing the family's (each must be one token with a leading space)
    answer_words: str | None = None
    #: what joins the history titles: "[NSEP]" (a new trained token, as released) or literal text such as " | "
    separator: str = "[NSEP]"
    #: the word for an item in the templates ("auto": movie on MovieLens, item elsewhere; released: news)
    item_noun: str = "auto"
    #: candidate text: its title (released) or its title followed by its other text fields
    item_text: Literal["title", "fields"] = "title"
    #: most recent history items in the user part (released max_his: 50)
    history_items: int = 50
    #: words kept of each history title (released: 10)
    history_title_words: int = 10
    #: words kept of a candidate title (released: 20)
    candidate_title_words: int = 20
    #: tokens kept of the user sentence (released max_his_len: 450)
    max_user_tokens: int = 450
    #: train instances used, a seeded sample (0 = all)
    max_instances: int = 240
    #: sampled negatives per positive (released num_negs: 4)
    negatives_per_positive: int = 4
    #: passes over the training examples (released run.sh: 3-5)
    epochs: int = 3
    #: examples per optimiser step: whole instances are packed until a batch has at least this many
    batch_size: int = 16
    #: AdamW learning rate (released: 2e-5 for full fine-tuning of BERT; LoRA wants more)
    lr: float = 3e-4
    #: AdamW weight decay (released wd: 1e-3)
    weight_decay: float = 1e-3
    #: gradient-norm clipping (0 = none, as released)
    grad_clip: float = 0.0
    #: LoRA rank (0 = full fine-tuning, as released)
    lora_r: int = 8
    #: LoRA alpha
    lora_alpha: int = 16
    #: LoRA dropout
    lora_dropout: float = 0.0
    #: modules LoRA adapts ("all-linear" = every linear layer but the LM head, or a comma list)
    lora_targets: str = "all-linear"
    #: val instances scored after every epoch to pick the best one (0 = the whole val split)
    val_instances: int = 0
    #: keep the epoch with the best val NDCG@10 (released); false keeps the last
    select_epoch: bool = True
    #: where fit saves the trained model (none = a temporary folder); also holds resumable epoch checkpoints
    save_to: str | None = None
    #: candidates per forward pass when scoring
    score_batch: int = 20
    #: cpu, cuda, or auto
    device: str = "auto"
    #: float32, bfloat16, float16, or auto (bf16 on CUDA, float32 on CPU)
    dtype: str = "auto"
    #: torch CPU threads (0 = torch's default)
    threads: int = 0


@dataclass
class _Group:
    """One training instance: the shared user prefix, its example rows and their labels (1 = positive)."""

    prefix: list[int]
    rows: list[list[int]]
    labels: list[int]
    user: str = ""


def answer_loss(two_logits, labels):
    """Summed 2-way cross-entropy over the answer words' logits only: ``CE([l_neg, l_pos], label)``.

    ``two_logits [n, 2]`` are ``(l_neg, l_pos)`` at the answer position (the policy's
    ``vocab_logits`` for ``vocab_ids = [neg, pos]``); every other vocabulary logit gets
    exactly zero gradient.
    """
    import torch

    return torch.nn.functional.cross_entropy(two_logits.float(), labels, reduction="sum")


def answer_logits(policy, prefix: list[int], rows: list[list[int]], pad_id: int, neg_id: int, pos_id: int):
    """``[n, 2]`` logits of (negative, positive) answer word after each row (rows continue the shared ``prefix``),
    from one :class:`r2bench.lm.policy.Policy` forward (the common prefix encoded once)."""
    from r2bench.lm.policy import last_position_batch

    dev = getattr(policy, "module", policy).lm.get_output_embeddings().weight.device  # through a DDP wrapper
    batch = last_position_batch([prefix + r for r in rows], pad_id, dev, vocab_ids=[neg_id, pos_id], decisions=False)
    return policy(batch, logprobs=False).vocab_logits


class Prompt4NRMethod(BaseMethod):
    name: ClassVar[str] = "prompt4nr"
    description: ClassVar[str] = "Prompt4NR: cloze-prompt fine-tuning (4 template families) on the same backbone"
    Config: ClassVar[type] = Prompt4NRConfig
    transferable: ClassVar[bool] = True
    pointwise: ClassVar[bool] = True

    def __init__(self, config: Prompt4NRConfig | None = None, seed: int = 0):
        super().__init__(config, seed)
        self.model: Any = None
        self.tokenizer: Any = None
        self.policy: Any = None  # r2bench.lm.policy.Policy around the LM: every forward goes through it
        self.template: Any = None
        self.engine: Any = None
        self._info: dict[str, Any] = {}

    def set_engine(self, engine) -> None:
        """Train on this :class:`r2bench.lm.engine.Engine` (e.g. several processes under ``accelerate launch``)."""
        self.engine = engine

    def set_model(self, model, tokenizer) -> None:
        """Start from an already loaded base model (tests); ``fit`` adds the tokens and LoRA."""
        from r2bench.lm.policy import Policy

        self.model, self.tokenizer, self.policy = model, tokenizer, Policy(model)

    # ---------------------------------------------------------------- text
    def _template(self, benchmark):
        from baselines.prompt4nr_templates import item_noun, make_template

        c = self.config
        noun = item_noun(benchmark.name) if c.item_noun == "auto" else c.item_noun
        return make_template(c.template, c.form, noun, c.separator, c.answer_words, c.n_prompt_tokens)

    def _cand_text(self, rec: dict[str, Any] | None) -> str:
        from baselines.prompt4nr_templates import clean_title

        c = self.config
        rec = rec or {}
        title = clean_title(rec.get("title", ""), c.candidate_title_words)
        if c.item_text == "title":
            return title
        fields = [str(v) for k, v in rec.items() if k not in ("item_id", "title") and v not in (None, "")]
        return f"{title} ({'; '.join(fields)})" if fields else title

    def _encode(self, row: dict[str, Any], recs: dict[str, Any], titles: dict[str, str], cands: list[str]):
        from baselines.prompt4nr_templates import encode_instance, history_titles

        c = self.config
        users = history_titles(row, titles, c.history_items, c.history_title_words)
        return encode_instance(self.tokenizer, self.template, users, [self._cand_text(recs.get(i)) for i in cands],
                               c.max_user_tokens)

    def _groups(self, benchmark) -> list[_Group]:
        from baselines.trainable import sample_train_rows
        from r2bench.stablehash import stable_rng

        c = self.config
        recs, titles = benchmark.item_records(), benchmark.item_titles
        out = []
        for row in sample_train_rows(benchmark, c.max_instances, self.seed, "prompt4nr"):
            t = int(row["target_index"])
            others = [k for k in range(len(row["candidates"])) if k != t]
            rng = stable_rng(self.seed, "prompt4nr-neg", int(row["instance_id"]))
            negs = rng.choice(others, size=min(c.negatives_per_positive, len(others)), replace=False).tolist()
            picked = [t] + negs
            enc = self._encode(row, recs, titles, [row["candidates"][k] for k in picked])
            out.append(_Group(enc.prefix, enc.rows, [1] + [0] * len(negs), str(row["user_id"])))
        return out

    # ---------------------------------------------------------------- model
    def _add_tokens(self) -> list[int]:
        """Add the template's new tokens to the tokenizer and the embedding table; their ids."""
        import torch

        from r2bench.stablehash import hash_seed

        new = self.template.new_tokens()
        if not new:
            return []
        missing = [t for t in new if t not in self.tokenizer.get_vocab()]
        if missing:
            self.tokenizer.add_tokens(missing)
        emb = self.model.get_input_embeddings().weight.shape[0]
        if len(self.tokenizer) > emb:
            torch.manual_seed(hash_seed(self.seed, 41))
            self.model.resize_token_embeddings(len(self.tokenizer))
        return [int(i) for i in self.tokenizer.convert_tokens_to_ids(new)]

    def _prepare_training_model(self, device: str | None = None) -> None:
        from baselines.trainable import lora_config
        from r2bench.lm.backbones import load_backbone
        from r2bench.lm.policy import Policy

        c = self.config
        if self.model is None:
            self.model, self.tokenizer = load_backbone(c.backbone, device=device or c.device, dtype=c.dtype,
                                                       merge_adapter=False, trainable=True)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        new_ids = self._add_tokens()
        if c.lora_r > 0:
            import peft

            extra = {"trainable_token_indices": new_ids} if new_ids else {}
            self.model = peft.get_peft_model(self.model, lora_config(c, **extra))
        else:
            for p in self.model.parameters():
                p.requires_grad_(True)
        self.policy = Policy(self.model)

    def _load_trained(self, folder: Path) -> None:
        """Load a folder written by :meth:`_save` (adapter or full model) for scoring."""
        import json

        from baselines.prompt4nr_templates import Template
        from r2bench.lm.backbones import load_backbone
        from r2bench.lm.policy import Policy
        from r2bench.errors import R2BenchError

        c = self.config
        meta_f = folder / META_FILE
        if not meta_f.is_file():
            raise R2BenchError(f"adapter {folder}: no {META_FILE}; expected a folder written by prompt4nr's fit (save_to)")
        meta = json.loads(meta_f.read_text())
        changed = {k: meta["config"][k] for k in TEXT_SETTINGS if meta["config"].get(k, getattr(c, k)) != getattr(c, k)}
        if changed:
            log.info("prompt4nr: using the prompt settings %s that %s was trained with", changed, folder)
            self.config = c = dataclasses.replace(c, **changed)
        t = meta["template"]
        self.template = Template(t["family"], t["form"], t["noun"], t["separator"], tuple(t["answers"]),
                                 int(t["n_prompt_tokens"]))
        if (folder / "adapter_config.json").is_file():
            import peft
            from transformers import AutoTokenizer

            self.model, _ = load_backbone(c.backbone, device=c.device, dtype=c.dtype)
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
            if len(self.tokenizer) > self.model.get_input_embeddings().weight.shape[0]:
                self.model.resize_token_embeddings(len(self.tokenizer))
            self.model = peft.PeftModel.from_pretrained(self.model, folder).merge_and_unload()
        else:
            self.model, self.tokenizer = load_backbone(str(folder), device=c.device, dtype=c.dtype)
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.policy = Policy(self.model)

    def _save(self, folder: Path) -> None:
        from r2bench.atomic import write_json
        from r2bench.lm.backbones import is_peft

        folder.mkdir(parents=True, exist_ok=True)
        if is_peft(self.model):
            # the new token rows are in the adapter (trainable tokens); the resized base table is not needed
            self.model.save_pretrained(folder, safe_serialization=True, save_embedding_layers=False)
        else:
            self.model.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        write_json(folder / META_FILE, {"template": asdict(self.template), "config": asdict(self.config),
                                        "seed": self.seed, "backbone": self.config.backbone})

    # ---------------------------------------------------------------- protocol
    def fit(self, benchmark) -> None:
        import torch

        from baselines.prompt4nr_templates import answer_token_ids
        from r2bench.lm.checkpoints import CSVLog
        from baselines.trainable import (
            Checkpoints,
            held_out_rows,
            load_trainable_state,
            mean_ndcg10,
            set_threads,
            trainable_state,
        )
        from r2bench.lm.engine import Engine
        from r2bench.progress import bar
        from r2bench.stablehash import hash_seed

        c = self.config
        set_threads(c.threads)
        if c.adapter:
            self._load_trained(Path(c.adapter))
            self._info = {"fitted": False, "adapter": str(c.adapter), "template": asdict(self.template)}
            return
        engine = self.engine if self.engine is not None else Engine()
        torch.manual_seed(hash_seed(self.seed, 3))  # the same new rows and LoRA initialisation on every process
        self.template = self._template(benchmark)
        self._prepare_training_model(engine.model_device(c.device))
        neg_id, pos_id = answer_token_ids(self.tokenizer, self.template)
        groups = self._groups(benchmark)
        val_rows = held_out_rows(benchmark, "val", c.val_instances)
        params = [p for p in self.model.parameters() if p.requires_grad]
        policy, opt = engine.prepare(self.policy, torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay),
                                     c.grad_clip)
        self.policy = engine.unwrap(policy)  # no-gradient passes (validation, scoring) use the module itself
        save_to = Path(c.save_to) if c.save_to else Path(tempfile.mkdtemp(prefix="prompt4nr-"))
        ckpts = Checkpoints(save_to)
        logger = CSVLog(save_to / "log.csv")
        start, best, best_epoch, best_state, history = 0, -1.0, -1, None, []
        last = ckpts.latest()
        if last is not None:
            st = Checkpoints.load(last, self.model, opt)
            start, best, best_epoch, history = int(st["epoch"]), float(st["best"]), int(st["best_epoch"]), st["history"]
            best_state = Checkpoints.load_extra(last, "best")
            if engine.is_main:
                logger.truncate_after(start, key="epoch")
            log.info("prompt4nr: resuming after epoch %d from %s", start, last)
        pad = self.tokenizer.pad_token_id
        t0 = time.perf_counter()
        for epoch in range(start, c.epochs):
            order = np.random.default_rng(hash_seed(self.seed, epoch, 5)).permutation(len(groups))
            batches, cur, n = [], [], 0
            for i in order.tolist():
                cur.append(groups[i])
                n += len(groups[i].rows)
                if n >= c.batch_size:
                    batches.append(cur)
                    cur, n = [], 0
            batches += [cur] if cur else []
            policy.train()
            losses, te = [], time.perf_counter()
            with bar(total=len(batches), desc=f"Prompt4NR epoch {epoch + 1}/{c.epochs}", unit="batch",
                     disable=not engine.is_main) as b:
                for batch in batches:
                    # the mean over the global batch's examples; one pass per instance (its user prefix shared)
                    n_ex = sum(len(g.rows) for g in batch)
                    shard = engine.shard([g.user for g in batch])
                    total = 0.0
                    for j, (item, w) in enumerate(zip(shard.items, shard.weights)):
                        g = batch[item]
                        with engine.micro_step(policy, last=j == len(shard.items) - 1):
                            two = answer_logits(policy, g.prefix, g.rows, pad, neg_id, pos_id)
                            loss = answer_loss(two, torch.tensor(g.labels, dtype=torch.long, device=two.device))
                            engine.backward(loss * (w * engine.world_size / n_ex))
                        total += w * float(loss.detach())
                    engine.step(policy, opt, c.grad_clip)
                    losses.append(engine.sum([total])[0] / n_ex)
                    b.update(1)
                    b.set_postfix(loss=f"{losses[-1]:.3f}")
            policy.eval()
            train_s = time.perf_counter() - te
            # every process scores the same val instances, so all take the same decision
            val = mean_ndcg10(self.score(benchmark, pl.DataFrame(val_rows)), val_rows) if val_rows else float("nan")
            improved = bool(val_rows) and val > best
            if improved:
                best, best_epoch, best_state = val, epoch + 1, trainable_state(self.model)
            entry = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_ndcg10": val, "best_epoch": best_epoch,
                     "train_s": train_s, "val_s": time.perf_counter() - te - train_s}
            history.append(entry)
            log.info("prompt4nr epoch %d: loss %.4f, val NDCG@10 %.4f", epoch + 1, entry["loss"], val)
            if engine.is_main:
                logger.write(entry)
                ckpts.save(f"epoch-{epoch + 1:03d}", self.model, opt,
                           {"epoch": epoch + 1, "best": best, "best_epoch": best_epoch, "history": history},
                           extra={"best": best_state} if best_state is not None else None)
            engine.barrier()
        if c.select_epoch and best_state is not None:
            load_trainable_state(self.model, best_state)
        self.model.eval()
        if engine.is_main:
            self._save(save_to / "final")
        engine.barrier()
        self._info = {"fitted": True, "train_instances": len(groups), "train_examples": sum(len(g.rows) for g in groups),
                      "epochs": c.epochs, "best_epoch": best_epoch if c.select_epoch else c.epochs,
                      "val_ndcg10_best": best, "val_instances": len(val_rows), "history": history,
                      "fit_s": time.perf_counter() - t0, "checkpoint": str(save_to / "final"),
                      "processes": engine.world_size,
                      "template": asdict(self.template), "new_tokens": self.template.new_tokens()}

    def score(self, benchmark, instances: pl.DataFrame) -> np.ndarray:
        import torch

        from baselines.prompt4nr_templates import answer_token_ids
        from r2bench.progress import bar

        if self.model is None:
            self.fit(benchmark)
        neg_id, pos_id = answer_token_ids(self.tokenizer, self.template)
        recs, titles = benchmark.item_records(), benchmark.item_titles
        pad = self.tokenizer.pad_token_id
        out = np.zeros((instances.height, benchmark.k), dtype=np.float64)
        sb = max(1, self.config.score_batch)
        was_training = self.model.training
        self.model.eval()
        with bar(total=instances.height, desc="Prompt4NR score", unit="inst") as b, torch.no_grad():
            for i, row in enumerate(instances.iter_rows(named=True)):
                enc = self._encode(row, recs, titles, list(row["candidates"]))
                for s in range(0, len(enc.rows), sb):
                    two = answer_logits(self.policy, enc.prefix, enc.rows[s:s + sb], pad, neg_id, pos_id)
                    out[i, s:s + len(enc.rows[s:s + sb])] = (two[:, 1] - two[:, 0]).cpu().numpy()
                b.update(1)
        if was_training:
            self.model.train()
        return out

    def info(self) -> dict[str, Any]:
        return {"backbone": self.config.backbone, **self._info}
