"""End-to-end RL for R2Rank (paper Algorithm 1): PPO for the LLM, REINFORCE for the head.

One step, for a batch of train instances (user context + 20 candidates):

1. *rollout* (no gradient): sample a reasoning ``y_k ~ pi_theta`` for each candidate,
   keep the sampling policy's token log-probs, score ``s_k = f_phi(h_k)`` where
   ``h_k`` is the last-layer hidden state at the decision position, draw
   ``ranking_samples`` rankings ``tau ~ P(.|s)`` (Gumbel-top-k) and their rewards
   ``rho = NDCG@reward_k(tau)``;
2. *optimisation* (``ppo_epochs`` epochs on the same rollouts, one optimiser step
   each, so that from the second epoch on the ratio differs from 1 and the clipping
   acts): ``phi`` (and, through ``h_k``, ``theta`` when ``pl_grad_to_backbone``)
   ascends ``(rho - b) log P(tau|s)`` (Eq. 5); ``theta`` ascends the clipped
   token-level objective of Eq. 6 with advantage ``rho`` (the mean over the ranking
   samples of the instance) for every token of every candidate of the instance.

Variants (paper section 4.3): ``rl-only`` (RL from the base backbone), ``sft+rl``
(RL from an SFT output folder given as ``backbone``), ``mlp-only`` (the LLM frozen:
rollouts as usual, only the head is trained, on the cached decision states) and
``no-cot`` (the decision-only prompt, PPO on the decision tokens).

Rollouts decode ``instances_per_batch`` instances together (0 = automatic: 1 on CPU,
as many as fit on a GPU; ``r2bench.r2rank.memory``). For ``mlp-only``, whose LLM is
frozen, ``generator=openai`` takes the reasonings from an OpenAI-compatible completions
endpoint serving the same backbone (``r2bench.r2rank.remote``), with a request seed per
step (so every step samples afresh and a resumed run re-reads its cached samples), and
computes the decision states locally. The sampling generator lives on the model's
device (``torch.Generator(device=...)``), and so do the Gumbel draws of the rankings.

Old log-probs are those of the sampling policy at temperature 1 (recomputed with the
training forward pass, so the first epoch's ratio is exactly 1); sampling at another
``temperature`` makes the rollouts slightly off-policy.

Checkpoints and logs are in ``r2bench.lm.checkpoints``, the distributed plumbing in ``r2bench.lm.distributed``;
the CLI is ``r2bench r2rank rl``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from r2bench.r2rank import plackett_luce
from r2bench.lm.checkpoints import peak_memory_mb
from r2bench.lm.generation import chat_prompt_ids
from r2bench.lm.policy import Policy
from r2bench.r2rank.ppo import Rollout, ppo_loss
from r2bench.lm.prompts import instance_prompt
from r2bench.r2rank.train_config import RLConfig
from r2bench.stablehash import hash_seed

log = logging.getLogger(__name__)


@dataclass
class StepLog:
    """One row of ``log.csv``."""

    step: int
    reward: float
    reward_std: float
    pl_loss: float
    ppo_loss: float
    clip_fraction: float
    approx_kl: float
    tokens: int
    tokens_per_s: float
    finished_share: float
    step_s: float
    rollout_s: float
    peak_mem_mb: float
    greedy_ndcg: float = float("nan")


@dataclass
class _Item:
    """The rollout of one instance and what the optimisation epochs need from it."""

    rollout: Rollout
    taus: torch.Tensor  # [S, K]
    rewards: torch.Tensor  # [S]
    hidden: torch.Tensor | None  # [K, H] cached decision states (mlp-only)
    advantage: float = 0.0


class RLTrainer:
    """Algorithm 1 on a policy (a HF causal LM, optionally peft-wrapped) and a scoring head.

    ``dist`` is a :class:`r2bench.lm.distributed.DistContext`-like object with
    ``rank``, ``world_size`` and ``all_reduce_mean(tensors)``; None = one process.
    """

    def __init__(self, cfg: RLConfig, model, tokenizer, head, benchmark, seed: int = 0, dist=None):
        self.cfg, self.model, self.tok, self.head = cfg, model, tokenizer, head
        self.bench, self.seed, self.dist = benchmark, seed, dist
        self.mlp_only = cfg.variant == "mlp-only"
        self.no_cot = cfg.variant == "no-cot"
        self.device = next(model.parameters()).device
        self.policy = Policy(model, head)  # the one module whose forward does every pass that needs gradients
        self.records = benchmark.item_records()
        if self.mlp_only:
            for p in model.parameters():
                p.requires_grad_(False)
        groups = [{"params": list(head.parameters()), "lr": cfg.lr_head}]
        policy_params = [p for p in model.parameters() if p.requires_grad]
        if policy_params:
            groups.append({"params": policy_params, "lr": cfg.lr_policy})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
        self.step = 0
        self.remote = None
        if cfg.generator == "openai":
            from r2bench.errors import R2BenchError

            if not self.mlp_only:
                raise R2BenchError(
                    f"generator=openai needs variant=mlp-only (a served model cannot follow the policy updates "
                    f"of variant {cfg.variant!r}); use generator=hf"
                )
            from r2bench.extras import require
            from r2bench.llm.client import LLMClient

            require("openai", purpose="RL rollouts with generator=openai")
            self.remote = LLMClient(cfg, seed=seed, allow_partial=True)

    # ------------------------------------------------------------------ rollouts
    def _prompt(self, row: dict[str, Any]):
        return instance_prompt(row, self.records, self.bench.profile_fields, no_cot=self.no_cot)

    def _prompt_ids(self, row: dict[str, Any]) -> list[list[int]]:
        return [chat_prompt_ids(self.tok, m) for m in self._prompt(row).all_messages()]

    def instances_per_batch(self, prompts: list[list[list[int]]], n_instances: int) -> int:
        """``instances_per_batch`` of the config, or the automatic value (1 on CPU)."""
        from r2bench.r2rank.memory import auto_instances_per_batch

        return auto_instances_per_batch(self.model, max(len(x) for x in prompts[0]), len(prompts[0]),
                                        self.cfg.max_reasoning_tokens, n_instances, self.cfg.instances_per_batch)

    @torch.no_grad()
    def scores_of_rows(self, rows: list[dict[str, Any]], greedy: bool,
                       generator=None) -> list[tuple[torch.Tensor, Rollout, torch.Tensor]]:
        """Per instance: (scores [K], rollout with old log-probs, decision hidden states [K, H]).

        The instances are decoded together. When no token log-probs are needed (greedy
        evaluation, ``mlp-only``), the decision states are read on the generation cache, as at
        inference (or, with ``generator=openai``, by one prefill over the returned reasonings);
        otherwise one pass of the policy module per instance gives log-probs and states together.
        """
        from r2bench.lm.generation import generate_instances
        from r2bench.r2rank.inference import decide_instances, reason_and_decide_instances
        from r2bench.r2rank.ppo import rollout_of

        cfg = self.cfg
        self.model.eval()
        prompts = [self._prompt_ids(r) for r in rows]
        common = dict(shared_prefix=cfg.shared_prefix, batch_size=max(len(p) for p in prompts),
                      instances_per_batch=len(rows))
        gen_kw = dict(max_new_tokens=cfg.max_reasoning_tokens, do_sample=not greedy, temperature=cfg.temperature,
                      top_p=1.0, generator=generator)
        hidden: list[Any] = [None] * len(rows)
        if self.remote is not None:
            from r2bench.r2rank.remote import remote_reasonings

            reasonings, _ = remote_reasonings(
                self.remote, self.tok, [self._prompt(r).all_messages() for r in rows], prompts,
                max_tokens=cfg.max_reasoning_tokens, do_sample=not greedy, temperature=cfg.temperature, top_p=1.0,
                server_token_ids=cfg.server_token_ids)
            hidden = [d[1] for d in decide_instances(self.model, self.tok, prompts, reasonings, **common)]
        elif greedy or self.mlp_only:
            decided = reason_and_decide_instances(self.model, self.tok, prompts, **gen_kw, **common)
            reasonings, hidden = [d[0] for d in decided], [d[1] for d in decided]
        else:
            reasonings = generate_instances(self.model, self.tok, prompts, **gen_kw, **common)
        out = []
        for p, rs, h in zip(prompts, reasonings, hidden):
            ro = rollout_of(self.model, self.tok, p, rs, cfg.max_reasoning_tokens)
            if h is None:
                fwd = self.policy(ro, shared_prefix=cfg.shared_prefix)
                ro.old_logprobs, h = fwd.logprobs, fwd.hidden
            h = h.float()
            out.append((self.head(h).float(), ro, h))
        return out

    def scores_of(self, row: dict[str, Any], greedy: bool, generator=None) -> tuple[torch.Tensor, Rollout, torch.Tensor]:
        """:meth:`scores_of_rows` for one instance."""
        return self.scores_of_rows([row], greedy, generator)[0]

    def _groups(self, rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        ipb = self.instances_per_batch([self._prompt_ids(rows[0])], len(rows)) if rows else 1
        return [rows[i:i + ipb] for i in range(0, len(rows), ipb)]

    def evaluate(self, rows: list[dict[str, Any]]) -> float:
        """Mean NDCG@10 of the greedy ranking (argsort of greedy-decoding scores; ties exact)."""
        from r2bench.eval.metrics import per_instance_metrics

        if not rows:
            return float("nan")
        if self.remote is not None:
            self.remote.seed = int(self.seed)  # greedy: one cache entry per prompt, reused by every evaluation
        scores = np.stack([s.cpu().numpy() for g in self._groups(rows)
                           for s, _, _ in self.scores_of_rows(g, greedy=True)]).astype(np.float64)
        target = np.array([int(r["target_index"]) for r in rows])
        return float(per_instance_metrics(scores, target, ["ndcg@10"])["ndcg@10"].mean())

    # ------------------------------------------------------------------ one step
    def _collect(self, rows: list[dict[str, Any]], gen: torch.Generator) -> list[_Item]:
        items = []
        if self.remote is not None:
            self.remote.seed = hash_seed(self.seed, self.step, self._rank())  # fresh samples every step
        for group in self._groups(rows):
            for row, (s, ro, hidden) in zip(group, self.scores_of_rows(group, greedy=False, generator=gen)):
                taus = plackett_luce.sample_rankings(s.cpu(), self.cfg.ranking_samples, generator=gen)
                rel = torch.zeros(s.shape[-1], dtype=torch.float64)
                rel[int(row["target_index"])] = 1.0
                rewards = plackett_luce.ndcg_at_k(taus, rel, self.cfg.reward_k)
                items.append(_Item(ro, taus.to(self.device), rewards.to(self.device), hidden if self.mlp_only else None))
        adv = torch.tensor([float(it.rewards.mean()) for it in items])
        if self.cfg.ppo_baseline == "batch-mean":
            adv = adv - adv.mean()
        for it, a in zip(items, adv.tolist()):
            it.advantage = a
        return items

    def _instance_backward(self, it: _Item, n_inst: int, token_norm: float) -> tuple[float, float, Any]:
        """Accumulate the gradients of one instance; returns (pl loss, ppo loss, ppo stats)."""
        cfg = self.cfg
        if self.mlp_only:
            s = self.policy(states=it.hidden).scores
            loss = plackett_luce.reinforce_loss(s, it.taus, it.rewards.to(s.dtype), cfg.baseline) / n_inst
            loss.backward()
            return float(loss.detach()), 0.0, None
        ro, k = it.rollout, it.rollout.n_candidates
        mb = max(1, min(cfg.micro_batch, k))
        chunks = [list(range(i, min(i + mb, k))) for i in range(0, k, mb)]
        # dL_pl/ds from the current scores (one extra no-grad pass when micro-batching)
        if len(chunks) > 1:
            with torch.no_grad():
                s_all = torch.cat([self.policy(ro.select(c), logprobs=False, shared_prefix=cfg.shared_prefix).scores
                                   for c in chunks])
        else:
            s_all = None
        stats, pl_val, ppo_val = [], 0.0, 0.0
        g_s = None
        for c in chunks:
            sub = ro.select(c)
            out = self.policy(sub, shared_prefix=cfg.shared_prefix, head_grad_to_lm=cfg.pl_grad_to_backbone)
            s = out.scores
            if s_all is None:
                pl_loss = plackett_luce.reinforce_loss(s, it.taus, it.rewards.to(s.dtype), cfg.baseline) / n_inst
                pl_term = pl_loss
                pl_val = float(pl_loss.detach())
            else:
                if g_s is None:
                    s_req = s_all.detach().requires_grad_(True)
                    pl_loss = plackett_luce.reinforce_loss(s_req, it.taus, it.rewards.to(s_req.dtype), cfg.baseline) / n_inst
                    (g_s,) = torch.autograd.grad(pl_loss, s_req)
                    pl_val = float(pl_loss.detach())
                pl_term = (s * g_s[c]).sum()
            adv = torch.full((sub.input_ids.shape[0],), it.advantage, dtype=torch.float32, device=self.device)
            if cfg.ppo_reduction == "seq-mean":
                adv = adv / sub.response_mask.sum(-1).clamp_min(1).float()
            ppo_sum, st = ppo_loss(out.logprobs, sub.old_logprobs, adv, sub.response_mask, cfg.clip_eps, reduction="sum")
            ppo_term = ppo_sum / token_norm
            (pl_term + ppo_term).backward()
            ppo_val += float(ppo_term.detach())
            stats.append(st)
        return pl_val, ppo_val, stats

    def train_step(self, rows: list[dict[str, Any]]) -> StepLog:
        cfg, t0 = self.cfg, time.perf_counter()
        gen = torch.Generator(device=self.device).manual_seed(hash_seed(self.seed, self.step, self._rank()))
        items = self._collect(rows, gen)
        n_tok = sum(int(it.rollout.response_mask.sum()) for it in items)
        t_roll = time.perf_counter() - t0
        if cfg.ppo_reduction == "token-mean":
            token_norm = float(self._global_sum(n_tok)) / self._world() if n_tok else 1.0
        elif cfg.ppo_reduction == "seq-mean":
            token_norm = float(sum(it.rollout.n_candidates for it in items))
        else:
            token_norm = 1.0
        if not self.mlp_only:
            self.model.train()
        pl_vals, ppo_vals, clip, kl, clip_w = [], [], 0.0, 0.0, 0
        for epoch in range(cfg.ppo_epochs):
            self.optimizer.zero_grad(set_to_none=True)
            e_pl = e_ppo = 0.0
            for it in items:
                a, b, stats = self._instance_backward(it, len(items), max(token_norm, 1.0))
                e_pl, e_ppo = e_pl + a, e_ppo + b
                if stats and epoch == cfg.ppo_epochs - 1:
                    for st in stats:
                        clip += st.clip_fraction * st.n_tokens
                        kl += st.approx_kl * st.n_tokens
                        clip_w += st.n_tokens
            self._sync_grads()
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            if cfg.grad_clip and cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            self.optimizer.step()
            pl_vals.append(e_pl)
            ppo_vals.append(e_ppo)
        self.model.eval()
        self.step += 1
        rewards = torch.stack([it.rewards.mean() for it in items]).double()
        dt = time.perf_counter() - t0
        return StepLog(
            step=self.step, reward=float(rewards.mean()), reward_std=float(rewards.std()) if len(items) > 1 else 0.0,
            pl_loss=float(np.mean(pl_vals)), ppo_loss=float(np.mean(ppo_vals)),
            clip_fraction=clip / clip_w if clip_w else 0.0, approx_kl=kl / clip_w if clip_w else 0.0,
            tokens=n_tok, tokens_per_s=n_tok / max(t_roll, 1e-9),
            finished_share=float(np.mean([f for it in items for f in it.rollout.finished])),
            step_s=dt, rollout_s=t_roll, peak_mem_mb=peak_memory_mb(self.device),
        )

    # ------------------------------------------------------------------ distributed
    def _rank(self) -> int:
        return self.dist.rank if self.dist else 0

    def _world(self) -> int:
        return self.dist.world_size if self.dist else 1

    def _global_sum(self, x: float) -> float:
        if not self.dist or self.dist.world_size == 1:
            return x
        return self.dist.all_reduce_sum(float(x))

    def _sync_grads(self) -> None:
        """Average gradients over processes (each process trained its own users' instances)."""
        if not self.dist or self.dist.world_size == 1:
            return
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.dist.all_reduce_mean([p.grad for p in params])


def fresh_head(hidden_size: int, inner_size: int, device=None, dropout: float = 0.0):
    """A new scoring head whose output layer is zero: every score ties, so RL starts from the uniform
    Plackett-Luce policy (and the untrained ranking is exactly at chance level)."""
    from r2bench.r2rank.head import ScoringHead

    head = ScoringHead(hidden_size, inner_size, dropout)
    with torch.no_grad():
        head.net[-1].weight.zero_()
        head.net[-1].bias.zero_()
    return head.to(device) if device is not None else head



def _train_rows(benchmark, dist, spec: str = "all", seed: int = 0) -> list[dict[str, Any]]:
    from r2bench.r2rank.instances import select_instances
    from r2bench.lm.distributed import shard_by_user

    rows = select_instances(benchmark.split("train").to_dicts(), spec, seed)
    return shard_by_user(rows, dist.rank if dist else 0, dist.world_size if dist else 1)


def run_rl(cfg: RLConfig, benchmark, out_dir: str | Path, seed: int = 0, resume: bool = True,
           model=None, tokenizer=None, dist=None) -> Path:
    """Train with Algorithm 1 and export ``<out>/final`` (a model folder + ``head.safetensors``).

    Resumes from ``<out>/checkpoints/LATEST`` when present (``resume``). ``model`` /
    ``tokenizer`` skip loading (tests). Returns the final folder, which
    ``r2bench run --method r2rank --set backbone=<final> --set head=auto`` scores with
    (for ``mlp-only`` the folder holds only the head; use the original backbone).
    """
    from r2bench.atomic import atomic_path, write_json
    from r2bench.progress import bar
    from r2bench.r2rank.head import ScoringHead
    from r2bench.lm.backbones import load_policy
    from r2bench.lm.checkpoints import Checkpointer, CSVLog, save_policy

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpointer(out)
    last = ckpt.latest() if resume else None
    main = dist is None or dist.is_main
    if model is None:
        adapter = str(last / "policy") if (last and cfg.lora_r > 0 and cfg.variant != "mlp-only") else None
        backbone = str(last / "policy") if (last and cfg.lora_r == 0 and cfg.variant != "mlp-only") else cfg.backbone
        model, tokenizer = load_policy(backbone, cfg, device=dist.device() if dist else cfg.device,
                                       dtype=cfg.dtype, adapter=adapter)
    if cfg.variant == "sft+rl" and not (Path(cfg.backbone) / "r2rank_train.json").is_file():
        log.warning("variant sft+rl expects backbone=<sft output>/final; %s is not an r2bench SFT output",
                    cfg.backbone)
    hidden_size = model.config.get_text_config().hidden_size
    torch.manual_seed(hash_seed(seed, 17))
    dev = model.get_output_embeddings().weight.device
    if last is not None:
        head = ScoringHead.load(last / "head.safetensors", device=dev)
    elif cfg.head:
        head = ScoringHead.load(cfg.head, device=dev)
    else:
        head = fresh_head(hidden_size, cfg.head_hidden, dev)
    head.train()
    trainer = RLTrainer(cfg, model, tokenizer, head, benchmark, seed=seed, dist=dist)
    if dist is not None:
        dist.broadcast_parameters([head] + ([] if trainer.mlp_only else [model]))
    logger = CSVLog(out / "log.csv", tensorboard=cfg.tensorboard and main)
    if last is not None:
        state = ckpt.load_state(last)
        Checkpointer.load_optimizer(last, trainer.optimizer)
        trainer.step = int(state["step"])
        logger.truncate_after(trainer.step)
        log.info("resuming RL from %s (step %d)", last, trainer.step)
    rows = _train_rows(benchmark, dist, cfg.train_instances, seed)
    if not rows:
        from r2bench.errors import R2BenchError

        raise R2BenchError(f"benchmark {benchmark.path} has no train instances for this process")
    eval_rows = benchmark.split(cfg.eval_split).head(cfg.eval_instances).to_dicts() if cfg.eval_instances else []
    meta = {"variant": cfg.variant, "seed": seed, "benchmark": str(benchmark.path),
            "benchmark_fingerprint": benchmark.fingerprint}
    with bar(total=cfg.steps, desc=f"RL {cfg.variant}", unit="step", initial=trainer.step) as pbar:
        while trainer.step < cfg.steps:
            rng = np.random.default_rng(hash_seed(seed, trainer.step, 1))
            batch = [rows[i] for i in rng.choice(len(rows), size=min(cfg.instances_per_step, len(rows)), replace=False)]
            entry = trainer.train_step(batch)
            if eval_rows and main and (trainer.step % cfg.eval_every == 0 or trainer.step == cfg.steps):
                entry.greedy_ndcg = trainer.evaluate(eval_rows)
            if main:
                logger.write(entry)
            pbar.update(1)
            pbar.set_postfix(reward=f"{entry.reward:.3f}", clip=f"{entry.clip_fraction:.2f}",
                             tok_s=f"{entry.tokens_per_s:.0f}")
            if main and cfg.checkpoint_every and (trainer.step % cfg.checkpoint_every == 0 or trainer.step == cfg.steps):
                ckpt.save(trainer.step, model, tokenizer, head, trainer.optimizer,
                          {"config": asdict(cfg), **meta}, save_model=not trainer.mlp_only)
    final = out / "final"
    if main:
        with atomic_path(final) as tmp:
            tmp.mkdir(parents=True)
            if not trainer.mlp_only:
                save_policy(model, tokenizer, tmp, merged=True)
            head.save(tmp / "head.safetensors")
            write_json(tmp / "r2rank_train.json", {"stage": "rl", "steps": trainer.step, "config": asdict(cfg), **meta})
    if dist is not None:
        dist.barrier()
    return final
