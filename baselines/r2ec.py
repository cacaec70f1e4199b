"""R2ec (You et al., 2025, "Towards Large Recommender Models with Reasoning") as a trainable baseline.

No new weights: the LM writes a reasoning about the user, and the "recommendation
head" is a table of item embeddings made by the same LM (:mod:`baselines.r2ec_prompts`).
The user's embedding is the hidden state where the reasoning writes ``<answer>``; an
item's is the hidden state after its own prompt with a pre-filled ``<answer>``; the
score is ``cos(user, item) / 0.02``.

**Training (RecPO, RL only; released ``trainers/RecPOTrainer.py``, settings from
``train.py`` and ``launch_train.sh``).** Each step takes ``users_per_step`` train
instances; for each, ``group_size`` reasonings are sampled (temperature 2.0, top-k 50),
rewarded by :func:`baselines.recpo.rewards` (over the whole catalog with the history
masked, or ``reward_over=candidates``: the instance's 20 candidates), turned into
z-scored advantages within the group, and one user's group at a time (the released
mini-batch) is backpropagated through :func:`baselines.recpo.recpo_loss`; one AdamW step
per step, LoRA (r 4, alpha 128), constant learning rate after a linear warm-up.
Held-out NDCG@10 on val is measured every ``eval_every`` steps (and before the first),
training stops after ``patience`` evaluations without improvement, and the best state is
kept. The item table used by the rewards is recomputed at every evaluation and its rows
of the step's targets refreshed after each step, as released.

**Scoring** (the r2bench protocol, the instance's 20 candidates): one greedy reasoning
per instance, its ``<answer>`` state against the candidates' embeddings.

Where it departs from the released code, and why, is listed in ``docs/methods/r2ec.md``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import polars as pl

from r2bench.llm.config import ClientConfig
from r2bench.methods import BaseMethod

log = logging.getLogger(__name__)

META_FILE = "r2ec.json"


@dataclass
class R2ecConfig(ClientConfig):
    """Settings of ``r2ec`` (``--set key=value``). The LLM client's settings (``base_url``, ``model``, ...) are
    used only by ``generator=openai``."""

    #: backbone name or Hugging Face folder (the shared backbone of R2Rank and TALLRec)
    backbone: str = "smollm2-135m"
    #: a trained R2ec folder (a LoRA adapter or model folder written by fit): score with it instead of training
    adapter: str | None = None
    #: train instances used, a seeded sample (0 = all)
    max_instances: int = 240
    #: passes over those instances (released: 3)
    epochs: int = 1
    #: users per optimiser step; their targets are the in-batch items (released train_batch_size: 4 per process)
    users_per_step: int = 4
    #: reasonings sampled per user (released group_size: 4)
    group_size: int = 4
    #: sampling temperature of the rollouts (released gen_temperature: 2.0)
    temperature: float = 2.0
    #: top-k of the rollouts (released gen_top_k: 50; 0 = off)
    top_k: int = 50
    #: top-p of the rollouts (released: 1.0)
    top_p: float = 1.0
    #: tokens a reasoning may have before <answer> is appended (released max_new_tokens: 640; CPU-sized here)
    max_reasoning_tokens: int = 64
    #: history lines in the user prompt (released window_size: 20)
    history_window: int = 20
    #: what the reward ranks the target among: the whole catalog with the history masked (released) or the
    #: instance's candidates
    reward_over: Literal["catalog", "candidates"] = "catalog"
    #: cut-off of the reward's NDCG (released reward_ndcg_k: 1000)
    reward_ndcg_k: int = 1000
    #: weight of the target's softmax probability in the reward (released reward_softmax_weight: 0.05)
    reward_softmax_weight: float = 0.05
    #: how advantages weight the loss: per-sequence (intended) or released (the double unsqueeze of batch_forward,
    #: which weights every sequence by the sum of the mini-batch's advantages: ~0 for one user's z-scored group)
    advantage_broadcast: Literal["per-sequence", "released"] = "per-sequence"
    #: lower clip of the ratios (released epsilon_low: 0.2)
    eps_low: float = 0.2
    #: upper clip of the ratios (released epsilon_high: 0.28)
    eps_high: float = 0.28
    #: rollouts per group whose user embedding takes part in the item loss (released launch_train.sh: 2)
    relabel_topk: int = 2
    #: temperature of the cosine similarity (released similarity_temperature: 0.02)
    similarity_temperature: float = 0.02
    #: AdamW learning rate (released: 1e-5, constant after warm-up)
    lr: float = 1e-5
    #: linear warm-up steps (released: 32)
    warmup_steps: int = 32
    #: AdamW weight decay (released: the Trainer's default, 0)
    weight_decay: float = 0.0
    #: gradient-norm clipping (released max_grad_norm: 1.0)
    grad_clip: float = 1.0
    #: LoRA rank (released: 4; 0 = full fine-tuning)
    lora_r: int = 4
    #: LoRA alpha (released: 128)
    lora_alpha: int = 128
    #: LoRA dropout (released 0.05, but the released trainer disables every dropout: 0 in effect)
    lora_dropout: float = 0.0
    #: modules LoRA adapts (released: the attention and MLP projections)
    lora_targets: str = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    #: steps between held-out evaluations (0 = only before training and at the end)
    eval_every: int = 10
    #: evaluate before the first step (released eval_on_start: true)
    eval_on_start: bool = True
    #: evaluations without a better val NDCG@10 before training stops (released early_stopping_patience: 8)
    patience: int = 8
    #: val instances of the held-out evaluation (0 = the whole val split)
    val_instances: int = 0
    #: keep the state with the best val NDCG@10 (released load_best_model_at_end); false keeps the last
    select_best: bool = True
    #: steps between resumable checkpoints (0 = only at evaluations)
    checkpoint_every: int = 5
    #: who writes the rollouts: the policy itself (hf) or an OpenAI-compatible completions endpoint serving it
    #: as a LoRA adapter synced after every step (openai; vLLM with runtime LoRA loading)
    generator: Literal["hf", "openai"] = "hf"
    #: item prompts per forward pass when embedding the catalog
    item_batch: int = 32
    #: where fit saves the trained model, its log and its checkpoints (none = a temporary folder)
    save_to: str | None = None
    #: cpu, cuda, or auto
    device: str = "auto"
    #: float32, bfloat16, float16, or auto (bf16 on CUDA, float32 on CPU)
    dtype: str = "auto"
    #: torch CPU threads (0 = torch's default)
    threads: int = 0


class R2ecMethod(BaseMethod):
    name: ClassVar[str] = "r2ec"
    description: ClassVar[str] = "R2ec: reasoning LLM whose <answer> state is matched to LLM item embeddings (RecPO)"
    Config: ClassVar[type] = R2ecConfig
    transferable: ClassVar[bool] = True
    pointwise: ClassVar[bool] = True

    def __init__(self, config: R2ecConfig | None = None, seed: int = 0):
        super().__init__(config, seed)
        self.model: Any = None
        self.tokenizer: Any = None
        self.policy: Any = None  # r2bench.lm.policy.Policy around the LM: every forward goes through it
        self._emb: dict[str, Any] = {}  # item id -> embedding under the current weights
        self._info: dict[str, Any] = {}
        self._reasonings: list[dict[str, Any]] = []
        self._served: Any = None  # the serving engine's policy (generator=openai), set by fit
        self.engine: Any = None

    def set_engine(self, engine) -> None:
        """Train on this :class:`r2bench.lm.engine.Engine` (e.g. several processes under ``accelerate launch``)."""
        self.engine = engine

    def set_model(self, model, tokenizer) -> None:
        """Start from an already loaded base model (tests); ``fit`` adds LoRA."""
        from baselines.r2ec_model import make_policy

        self.model, self.tokenizer, self.policy = model, tokenizer, make_policy(model)

    # ---------------------------------------------------------------- prompts
    def _prompter(self, benchmark):
        from baselines.r2ec_model import open_ids
        from r2bench.lm.generation import chat_prompt_ids
        from baselines.r2ec_prompts import domain_words, item_message, user_message, user_ratings

        words = domain_words(benchmark.name)
        recs, titles = benchmark.item_records(), benchmark.item_titles
        oid = open_ids(self.tokenizer)
        ratings: dict[tuple[str, str], float] = {}
        seen: set[str] = set()

        def user(row: dict[str, Any]) -> list[int]:
            u = str(row["user_id"])
            if u not in seen:
                ratings.update(user_ratings(benchmark.interactions, [u]))
                seen.add(u)
            msg = user_message(row, titles, ratings, words, self.config.history_window)
            return chat_prompt_ids(self.tokenizer, [{"role": "user", "content": msg}])

        def item(item_id: str) -> list[int]:
            return chat_prompt_ids(self.tokenizer, [{"role": "user", "content": item_message(recs.get(item_id), words)}]) + oid

        return user, item

    def _embed(self, item_ids: list[str], item_prompt) -> Any:
        """Embeddings ``[n, H]`` of ``item_ids`` under the current weights (cached until the weights change)."""
        import torch

        from baselines.r2ec_model import item_embeddings

        need = [i for i in dict.fromkeys(item_ids) if i not in self._emb]
        if need:
            was = self.model.training
            self.model.eval()
            e = item_embeddings(self.policy, [item_prompt(i) for i in need], self._pad(), self.config.item_batch)
            if was:
                self.model.train()
            self._emb.update({i: e[k] for k, i in enumerate(need)})
        return torch.stack([self._emb[i] for i in item_ids])

    def _pad(self) -> int:
        t = self.tokenizer
        return t.pad_token_id if t.pad_token_id is not None else t.eos_token_id

    # ---------------------------------------------------------------- model
    def _prepare_training_model(self, device: str | None = None) -> None:
        from baselines.r2ec_model import make_policy
        from baselines.trainable import lora_config
        from r2bench.lm.backbones import load_backbone

        c = self.config
        if self.model is None:
            self.model, self.tokenizer = load_backbone(c.backbone, device=device or c.device, dtype=c.dtype,
                                                       merge_adapter=False, trainable=True)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if c.lora_r > 0:
            import peft

            self.model = peft.get_peft_model(self.model, lora_config(c))
        else:
            for p in self.model.parameters():
                p.requires_grad_(True)
        for mod in self.model.modules():  # released: disable_dropout_in_model
            if mod.__class__.__name__ == "Dropout":
                mod.p = 0.0
        self.policy = make_policy(self.model)

    def _load_trained(self, folder: Path) -> None:
        from baselines.r2ec_model import make_policy
        from r2bench.lm.backbones import load_backbone

        c = self.config
        if (folder / "adapter_config.json").is_file():
            self.model, self.tokenizer = load_backbone(c.backbone, adapter=str(folder), device=c.device, dtype=c.dtype)
        else:
            self.model, self.tokenizer = load_backbone(str(folder), device=c.device, dtype=c.dtype)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.policy = make_policy(self.model)

    def _save(self, folder: Path) -> None:
        from r2bench.atomic import write_json
        from r2bench.lm.checkpoints import save_policy

        save_policy(self.model, self.tokenizer, folder)
        write_json(folder / META_FILE, {"config": asdict(self.config), "seed": self.seed})

    # ---------------------------------------------------------------- rollouts and scoring
    def _rollouts(self, prompts: list[list[int]], greedy: bool, seeds: list[int], served=None):
        from baselines.r2ec_model import hf_rollouts

        c = self.config
        n = 1 if greedy else c.group_size
        if served is not None:
            return served.rollouts(prompts, n, c.max_reasoning_tokens, greedy, c.temperature, c.top_k, c.top_p, seeds)
        return [hf_rollouts(self.model, self.tokenizer, p, n, c.max_reasoning_tokens, greedy, c.temperature,
                            c.top_k, c.top_p, s) for p, s in zip(prompts, seeds)]

    def _user_embeddings(self, rows: list[dict[str, Any]], user_prompt, served=None, record: bool = False):
        """Greedy reasoning per instance -> its <answer> states ``[n, H]``."""
        import torch

        from baselines.r2ec_model import user_pass

        prompts = [user_prompt(r) for r in rows]
        outs = self._rollouts(prompts, greedy=True, seeds=[self.seed] * len(rows), served=served)
        hs = []
        with torch.no_grad():
            for row, p, o in zip(rows, prompts, outs):
                ids, wrote = o[0]
                hs.append(user_pass(self.policy, p, [ids], self._pad(), need_logprobs=False).user_h[0].float())
                if record:
                    self._reasonings.append({"instance_id": int(row["instance_id"]),
                                             "reasoning": self.tokenizer.decode(ids), "tokens": len(ids),
                                             "wrote_answer": bool(wrote)})
        return torch.stack(hs)

    def _score_rows(self, benchmark, rows: list[dict[str, Any]], served=None, record: bool = False) -> np.ndarray:
        from baselines.recpo import similarity

        user_prompt, item_prompt = self._prompter(benchmark)
        out = np.zeros((len(rows), benchmark.k), dtype=np.float64)
        for s in range(0, len(rows), 16):
            chunk = rows[s:s + 16]
            u = self._user_embeddings(chunk, user_prompt, served, record)
            for j, row in enumerate(chunk):
                e = self._embed([str(i) for i in row["candidates"]], item_prompt)
                out[s + j] = similarity(u[j:j + 1], e, self.config.similarity_temperature)[0].cpu().numpy()
        return out

    # ---------------------------------------------------------------- protocol
    def fit(self, benchmark) -> None:
        from baselines.trainable import set_threads

        c = self.config
        set_threads(c.threads)
        if c.adapter:
            self._load_trained(Path(c.adapter))
            self._emb = {}
            self._info = {"fitted": False, "adapter": str(c.adapter)}
            return
        from baselines.r2ec_train import train_r2ec

        self._info = train_r2ec(self, benchmark)

    def score(self, benchmark, instances: pl.DataFrame) -> np.ndarray:
        if self.model is None:
            self.fit(benchmark)
        self.model.eval()
        self._reasonings = []
        return self._score_rows(benchmark, instances.to_dicts(), self._served, record=True)

    def artifacts(self) -> dict[str, pl.DataFrame]:
        return {"rationales": pl.DataFrame(self._reasonings)} if self._reasonings else {}

    def info(self) -> dict[str, Any]:
        out = {"backbone": self.config.backbone, **self._info}
        if self._reasonings:
            out["test_reasoning_tokens_mean"] = float(np.mean([r["tokens"] for r in self._reasonings]))
            out["test_wrote_answer_share"] = float(np.mean([r["wrote_answer"] for r in self._reasonings]))
        return out

