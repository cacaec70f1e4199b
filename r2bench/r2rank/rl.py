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

Who writes the reasonings is pluggable (:class:`RolloutSource`): the policy itself
(``generator=hf``: the hand-written decoding loop, the decision read on the generation
cache), or a serving engine behind an OpenAI-compatible endpoint (``generator=openai``,
:class:`ServedRollouts`). A served source is told after every optimiser step
(``after_step``), which is where a source that loads the updated LoRA adapter into the
serving engine (vLLM's runtime LoRA loading) fits; until one does, a served source may
only serve a frozen LLM (``mlp-only``).

Training runs on the accelerate engine (``r2bench.lm.engine``) through the policy module
(``r2bench.lm.policy.Policy``: the LLM and the head, one forward per pass): DDP, DeepSpeed
ZeRO or FSDP2, as launched. Each step draws a *global* batch of ``instances_per_step``
train instances (the same seeded draw on every process); each process keeps its users'
instances, padded with zero-weight repeats to the same count on every process, and the
losses are weighted so that the engine's gradient average equals one process's gradient on
the whole batch. Sampling is seeded per instance (``hash_seed(seed, step, instance_id)``),
so an instance's reasonings and rankings do not depend on how many processes run or which
one takes it: several processes give the same step as one.

Checkpoints and logs are in ``r2bench.lm.checkpoints``; the CLI is ``r2bench r2rank rl``.
"""

from __future__ import annotations

import dataclasses
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
    #: 1 for this process's instance, 0 for a zero-weight repeat (equal passes on every process)
    weight: float = 1.0


class RolloutSource:
    """Who writes the reasonings of rollouts and greedy evaluations (``generator=hf``: the policy itself).

    A *served* source returns reasonings for prompts (:meth:`reasonings`); the trainer then
    reads the decision states locally (and, when it trains the LLM, the old log-probs by one
    pass of the policy). ``before_step`` / ``after_step`` run around every optimisation step
    on every process: a serving engine that follows the policy loads the updated adapter in
    ``after_step``. The local source (``served = False``) decodes with the hand-written loop.
    """

    served: bool = False
    #: whether the reasonings follow the policy's updates (a frozen served model does not)
    follows_policy: bool = True

    def reasonings(self, trainer: "RLTrainer", rows: list[dict[str, Any]], prompts: list[list[list[int]]],
                   greedy: bool) -> list[list[Any]]:
        raise NotImplementedError

    def before_step(self, trainer: "RLTrainer") -> None:
        return None

    def after_step(self, trainer: "RLTrainer") -> None:
        return None

    def before_evaluation(self, trainer: "RLTrainer") -> None:
        return None


class ServedRollouts(RolloutSource):
    """Reasonings from an OpenAI-compatible completions endpoint serving the same backbone
    (``generator=openai``; ``r2bench.r2rank.remote``). Each process sends its own users' requests
    to the one serving engine. The served model does not follow the policy's updates, so this
    source serves ``mlp-only`` (the LLM frozen)."""

    served = True
    follows_policy = False

    def __init__(self, cfg: RLConfig, seed: int):
        from r2bench.extras import require
        from r2bench.llm.client import LLMClient

        require("openai", purpose="RL rollouts with generator=openai")
        self.cfg, self.seed = cfg, seed
        self.client = LLMClient(cfg, seed=seed, allow_partial=True)

    def before_step(self, trainer: "RLTrainer") -> None:
        # fresh samples every step, the same request seed on every process (no rank in it)
        self.client.seed = hash_seed(self.seed, trainer.step, 0)

    def before_evaluation(self, trainer: "RLTrainer") -> None:
        self.client.seed = int(self.seed)  # greedy: one cache entry per prompt, reused by every evaluation

    def reasonings(self, trainer, rows, prompts, greedy):
        from r2bench.r2rank.remote import remote_reasonings

        cfg = self.cfg
        out, _ = remote_reasonings(
            self.client, trainer.tok, [trainer._prompt(r).all_messages() for r in rows], prompts,
            max_tokens=cfg.max_reasoning_tokens, do_sample=not greedy, temperature=cfg.temperature, top_p=1.0,
            server_token_ids=cfg.server_token_ids)
        return out


class RLTrainer:
    """Algorithm 1 on a policy (a HF causal LM, optionally peft-wrapped) and a scoring head.

    ``engine``: the :class:`r2bench.lm.engine.Engine` (None = a new one: one process unless
    launched). The LM and the head are held by one :class:`r2bench.lm.policy.Policy`, prepared
    by the engine (``self.policy``: what the optimisation passes call); ``self.model`` and
    ``self.head`` are the unwrapped LM and head (rollouts, evaluation). ``rollouts``: a
    :class:`RolloutSource` (None = from the config's ``generator``).
    """

    def __init__(self, cfg: RLConfig, model, tokenizer, head, benchmark, seed: int = 0, engine=None,
                 rollouts: RolloutSource | None = None):
        from r2bench.lm.engine import Engine

        self.cfg, self.model, self.tok, self.head = cfg, model, tokenizer, head
        self.bench, self.seed = benchmark, seed
        self.engine = engine if engine is not None else Engine()
        self.mlp_only = cfg.variant == "mlp-only"
        self.no_cot = cfg.variant == "no-cot"
        self.device = next(model.parameters()).device
        self.records = benchmark.item_records()
        if self.mlp_only:
            for p in model.parameters():
                p.requires_grad_(False)
        groups = [{"params": list(head.parameters()), "lr": cfg.lr_head}]
        policy_params = [p for p in model.parameters() if p.requires_grad]
        if policy_params:
            groups.append({"params": policy_params, "lr": cfg.lr_policy})
        optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
        # the one module whose forward does every pass that needs gradients, wrapped by the engine
        self.policy, self.optimizer = self.engine.prepare(Policy(model, head), optimizer, cfg.grad_clip)
        self.step = 0
        if rollouts is None:
            rollouts = ServedRollouts(cfg, seed) if cfg.generator == "openai" else RolloutSource()
        if rollouts.served and not rollouts.follows_policy and not self.mlp_only:
            from r2bench.errors import R2BenchError

            raise R2BenchError(
                f"generator=openai needs variant=mlp-only (a served model that does not load the policy's updates "
                f"cannot sample for variant {cfg.variant!r}); use generator=hf"
            )
        self.rollouts = rollouts

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
        inference (or, with a served source, by one prefill over the returned reasonings);
        otherwise one pass of the policy module per instance gives log-probs and states together.
        Call it inside ``engine.full_parameters(self.policy)`` (the decoding loop calls the LM piecewise).
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
        if self.rollouts.served:
            reasonings = self.rollouts.reasonings(self, rows, prompts, greedy)
            if greedy or self.mlp_only:
                hidden = [d[1] for d in decide_instances(self.model, self.tok, prompts, reasonings, **common)]
        elif greedy or self.mlp_only:
            decided = reason_and_decide_instances(self.model, self.tok, prompts, **gen_kw, **common)
            reasonings, hidden = [d[0] for d in decided], [d[1] for d in decided]
        else:
            reasonings = generate_instances(self.model, self.tok, prompts, **gen_kw, **common)
        module = self.engine.unwrap(self.policy)
        out = []
        for p, rs, h in zip(prompts, reasonings, hidden):
            ro = rollout_of(self.model, self.tok, p, rs, cfg.max_reasoning_tokens)
            if h is None:
                ro.old_logprobs, h = self._old_logprobs(module, ro)
            h = h.float()
            out.append((self.head(h).float(), ro, h))
        return out

    def _old_logprobs(self, module, ro: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
        """The sampling policy's response log-probs ``[rows, R]`` and decision states ``[K, H]`` (no gradient),
        ``micro_batch`` candidates per pass (with their extra decision rows), as the optimisation takes them."""
        cfg, k = self.cfg, ro.n_candidates
        mb = max(1, min(cfg.micro_batch, k))
        if mb >= k:
            fwd = module(ro, shared_prefix=cfg.shared_prefix)
            return fwd.logprobs, fwd.hidden
        lp = torch.zeros(ro.response_mask.shape, dtype=torch.float32, device=ro.response_mask.device)
        states = []
        for i in range(0, k, mb):
            c = list(range(i, min(i + mb, k)))
            rows = sorted(set(c) | {int(ro.decision_row[j]) for j in c})  # the rows of ro.select(c), in order
            fwd = module(ro.select(c), shared_prefix=cfg.shared_prefix)
            lp[torch.tensor(rows, device=lp.device)] = fwd.logprobs.to(lp.dtype)
            states.append(fwd.hidden)
        return lp, torch.cat(states)

    def scores_of(self, row: dict[str, Any], greedy: bool, generator=None) -> tuple[torch.Tensor, Rollout, torch.Tensor]:
        """:meth:`scores_of_rows` for one instance."""
        with self.engine.full_parameters(self.policy):
            return self.scores_of_rows([row], greedy, generator)[0]

    def _groups(self, rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        ipb = self.instances_per_batch([self._prompt_ids(rows[0])], len(rows)) if rows else 1
        return [rows[i:i + ipb] for i in range(0, len(rows), ipb)]

    def evaluate(self, rows: list[dict[str, Any]]) -> float:
        """Mean NDCG@10 of the greedy ranking (argsort of greedy-decoding scores; ties exact).

        Every process calls it with the same ``rows``; each scores its users' instances and the
        NDCG sums are added over processes."""
        from r2bench.eval.metrics import per_instance_metrics
        from r2bench.lm.engine import shard_by_user

        if not rows:
            return float("nan")
        mine = shard_by_user(rows, self.engine.rank, self.engine.world_size)
        self.rollouts.before_evaluation(self)
        total = 0.0
        if mine:
            with self.engine.full_parameters(self.policy):
                scores = np.stack([s.cpu().numpy() for g in self._groups(mine)
                                   for s, _, _ in self.scores_of_rows(g, greedy=True)]).astype(np.float64)
            target = np.array([int(r["target_index"]) for r in mine])
            total = float(per_instance_metrics(scores, target, ["ndcg@10"])["ndcg@10"].sum())
        elif self.engine.kind == "FSDP":
            with self.engine.full_parameters(self.policy):  # the unshard is a collective: take part in it
                pass
        return self.engine.sum([total])[0] / len(rows)

    # ------------------------------------------------------------------ one step
    def _generator(self, row: dict[str, Any]) -> torch.Generator:
        """The sampling generator of one instance at this step (independent of the process layout)."""
        return torch.Generator(device=self.device).manual_seed(hash_seed(self.seed, self.step, int(row["instance_id"])))

    def _collect(self, rows: list[dict[str, Any]], generator: torch.Generator | None = None) -> list[_Item]:
        """Rollouts of ``rows`` (this process's instances). Each decoding group samples with the generator
        of its first instance (one instance per group on a CPU); ``generator`` overrides it (tests)."""
        items = []
        self.rollouts.before_step(self)
        with self.engine.full_parameters(self.policy):
            for group in self._groups(rows):
                gen = generator if generator is not None else self._generator(group[0])
                for row, (s, ro, hidden) in zip(group, self.scores_of_rows(group, greedy=False, generator=gen)):
                    taus = plackett_luce.sample_rankings(s.cpu(), self.cfg.ranking_samples, generator=gen)
                    rel = torch.zeros(s.shape[-1], dtype=torch.float64)
                    rel[int(row["target_index"])] = 1.0
                    rewards = plackett_luce.ndcg_at_k(taus, rel, self.cfg.reward_k)
                    items.append(_Item(ro, taus.to(self.device), rewards.to(self.device),
                                       hidden if self.mlp_only else None))
        for it in items:
            it.advantage = float(it.rewards.mean())
        return items

    def _instance_backward(self, it: _Item, pl_weight: float, token_norm: float,
                           last: bool = True) -> tuple[float, float, Any]:
        """Accumulate the gradients of one instance; returns (pl loss, ppo loss, ppo stats).

        ``pl_weight`` multiplies the instance's REINFORCE loss (``world_size / global instances``,
        0 for a repeat), ``token_norm`` divides its PPO sum; ``last``: the instance's last pass is
        the optimiser step's last (its backward synchronises the gradients)."""
        cfg, eng = self.cfg, self.engine
        ppo_scale = 1.0 if it.weight > 0 else 0.0
        if self.mlp_only:
            with eng.micro_step(self.policy, last):
                s = self.policy(states=it.hidden).scores
                loss = plackett_luce.reinforce_loss(s, it.taus, it.rewards.to(s.dtype), cfg.baseline) * pl_weight
                eng.backward(loss)
            return float(loss.detach()), 0.0, None
        ro, k = it.rollout, it.rollout.n_candidates
        mb = max(1, min(cfg.micro_batch, k))
        chunks = [list(range(i, min(i + mb, k))) for i in range(0, k, mb)]
        # dL_pl/ds from the current scores (one extra no-grad pass when micro-batching)
        if len(chunks) > 1:
            module = eng.unwrap(self.policy)
            with torch.no_grad():
                s_all = torch.cat([module(ro.select(c), logprobs=False, shared_prefix=cfg.shared_prefix).scores
                                   for c in chunks])
        else:
            s_all = None
        stats, pl_val, ppo_val = [], 0.0, 0.0
        g_s = None
        for n_c, c in enumerate(chunks):
            sub = ro.select(c)
            with eng.micro_step(self.policy, last and n_c == len(chunks) - 1):
                out = self.policy(sub, shared_prefix=cfg.shared_prefix, head_grad_to_lm=cfg.pl_grad_to_backbone)
                s = out.scores
                if s_all is None:
                    pl_loss = plackett_luce.reinforce_loss(s, it.taus, it.rewards.to(s.dtype), cfg.baseline) * pl_weight
                    pl_term = pl_loss
                    pl_val = float(pl_loss.detach())
                else:
                    if g_s is None:
                        s_req = s_all.detach().requires_grad_(True)
                        pl_loss = plackett_luce.reinforce_loss(s_req, it.taus, it.rewards.to(s_req.dtype),
                                                               cfg.baseline) * pl_weight
                        (g_s,) = torch.autograd.grad(pl_loss, s_req)
                        pl_val = float(pl_loss.detach())
                    pl_term = (s * g_s[c]).sum()
                adv = torch.full((sub.input_ids.shape[0],), it.advantage, dtype=torch.float32, device=self.device)
                if cfg.ppo_reduction == "seq-mean":
                    adv = adv / sub.response_mask.sum(-1).clamp_min(1).float()
                ppo_sum, st = ppo_loss(out.logprobs, sub.old_logprobs, adv, sub.response_mask, cfg.clip_eps,
                                       reduction="sum")
                ppo_term = ppo_sum * (ppo_scale / token_norm)
                eng.backward(pl_term + ppo_term)
            ppo_val += float(ppo_term.detach())
            if ppo_scale:
                stats.append(st)
        return pl_val, ppo_val, stats

    def train_step(self, rows: list[dict[str, Any]]) -> StepLog:
        """One step on the global batch ``rows`` (the same list on every process; each takes its users')."""
        cfg, eng, t0 = self.cfg, self.engine, time.perf_counter()
        shard = eng.shard([str(r["user_id"]) for r in rows])
        own = self._collect([rows[i] for i in shard.own])
        if not own and shard.items:  # nothing of its own this step: a rollout to repeat with weight 0
            own = self._collect([rows[shard.items[0]]])
            for it in own:
                it.weight = 0.0
        # the process's passes: its instances, then zero-weight repeats up to the largest share
        items = own[: shard.n_own] + [dataclasses.replace(own[0], weight=0.0)
                                      for _ in range(len(shard.items) - shard.n_own)]
        real = items[: shard.n_own]
        n_tok = sum(int(it.rollout.response_mask.sum()) for it in real)
        n_cand = sum(it.rollout.n_candidates for it in real)
        g_tok, g_cand, g_adv = eng.sum([n_tok, n_cand, sum(it.advantage for it in real)])
        t_roll = time.perf_counter() - t0
        world, n_global = eng.world_size, max(shard.n_global, 1)
        if cfg.ppo_baseline == "batch-mean":  # the mean over the global batch, as one process would take it
            for it in items:
                it.advantage -= g_adv / n_global
        if cfg.ppo_reduction == "token-mean":
            token_norm = g_tok / world if g_tok else 1.0
        elif cfg.ppo_reduction == "seq-mean":
            token_norm = g_cand / world
        else:
            token_norm = 1.0
        token_norm = max(token_norm, 1.0) if cfg.ppo_reduction != "sum" else 1.0
        if not self.mlp_only:
            self.policy.train()
        pl_vals, ppo_vals, clip, kl, clip_w = [], [], 0.0, 0.0, 0
        for epoch in range(cfg.ppo_epochs):
            e_pl = e_ppo = 0.0
            for n_it, it in enumerate(items):
                a, b, stats = self._instance_backward(it, it.weight * world / n_global, token_norm,
                                                      last=n_it == len(items) - 1)
                e_pl, e_ppo = e_pl + a, e_ppo + b
                if stats and epoch == cfg.ppo_epochs - 1:
                    for st in stats:
                        clip += st.clip_fraction * st.n_tokens
                        kl += st.approx_kl * st.n_tokens
                        clip_w += st.n_tokens
            eng.step(self.policy, self.optimizer, cfg.grad_clip)
            pl_vals.append(e_pl)
            ppo_vals.append(e_ppo)
        self.policy.eval()
        self.step += 1
        self.rollouts.after_step(self)
        rew = [float(it.rewards.mean()) for it in real]
        fin = [f for it in real for f in it.rollout.finished]
        sums = eng.sum([sum(rew), sum(r * r for r in rew), len(rew), float(np.mean(pl_vals)), float(np.mean(ppo_vals)),
                        clip, kl, clip_w, n_tok, sum(fin), len(fin)])
        r_sum, r_sq, r_n, pl_sum, ppo_sum, clip, kl, clip_w, g_tok, f_sum, f_n = sums
        mean = r_sum / max(r_n, 1)
        var = (r_sq - r_n * mean * mean) / (r_n - 1) if r_n > 1 else 0.0
        dt = time.perf_counter() - t0
        return StepLog(
            step=self.step, reward=mean, reward_std=float(np.sqrt(max(var, 0.0))),
            pl_loss=pl_sum / world, ppo_loss=ppo_sum / world,
            clip_fraction=clip / clip_w if clip_w else 0.0, approx_kl=kl / clip_w if clip_w else 0.0,
            tokens=int(g_tok), tokens_per_s=g_tok / max(t_roll, 1e-9),
            finished_share=f_sum / f_n if f_n else float("nan"),
            step_s=dt, rollout_s=t_roll, peak_mem_mb=peak_memory_mb(self.device),
        )


def fresh_head(hidden_size: int, inner_size: int, device=None, dropout: float = 0.0):
    """A new scoring head whose output layer is zero: every score ties, so RL starts from the uniform
    Plackett-Luce policy (and the untrained ranking is exactly at chance level)."""
    from r2bench.r2rank.head import ScoringHead

    head = ScoringHead(hidden_size, inner_size, dropout)
    with torch.no_grad():
        head.net[-1].weight.zero_()
        head.net[-1].bias.zero_()
    return head.to(device) if device is not None else head


def train_rows(benchmark, spec: str = "all", seed: int = 0) -> list[dict[str, Any]]:
    """The train instances RL steps draw their global batches from (every process: all of them)."""
    from r2bench.r2rank.instances import select_instances

    return select_instances(benchmark.split("train").to_dicts(), spec, seed)


def run_rl(cfg: RLConfig, benchmark, out_dir: str | Path, seed: int = 0, resume: bool = True,
           model=None, tokenizer=None, engine=None) -> Path:
    """Train with Algorithm 1 and export ``<out>/final`` (a model folder + ``head.safetensors``).

    Resumes from ``<out>/checkpoints/LATEST`` when present (``resume``). ``model`` /
    ``tokenizer`` skip loading (tests). ``engine``: the :class:`r2bench.lm.engine.Engine` (None = a
    new one); under ``accelerate launch`` every process runs this, and only the main process writes
    the log and the final folder. Returns the final folder, which ``r2bench run --method r2rank
    --set backbone=<final> --set head=auto`` scores with (for ``mlp-only`` the folder holds only the
    head; use the original backbone).
    """
    from r2bench.atomic import atomic_path, write_json
    from r2bench.lm.backbones import load_policy
    from r2bench.lm.checkpoints import Checkpointer, CSVLog, save_policy
    from r2bench.lm.engine import Engine
    from r2bench.progress import bar
    from r2bench.r2rank.head import ScoringHead

    engine = engine if engine is not None else Engine()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpointer(out)
    last = ckpt.latest() if resume else None
    main = engine.is_main
    if model is None:
        engine.seed(hash_seed(seed, 16))  # the same LoRA initialisation on every process
        adapter = str(last / "policy") if (last and cfg.lora_r > 0 and cfg.variant != "mlp-only") else None
        backbone = str(last / "policy") if (last and cfg.lora_r == 0 and cfg.variant != "mlp-only") else cfg.backbone
        model, tokenizer = load_policy(backbone, cfg, device=engine.model_device(cfg.device),
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
    trainer = RLTrainer(cfg, model, tokenizer, head, benchmark, seed=seed, engine=engine)
    logger = CSVLog(out / "log.csv", tensorboard=cfg.tensorboard and main) if main else None
    if last is not None:
        state = ckpt.load_state(last)
        Checkpointer.load_optimizer(last, trainer.optimizer, engine)
        trainer.step = int(state["step"])
        if logger is not None:
            logger.truncate_after(trainer.step)
        log.info("resuming RL from %s (step %d)", last, trainer.step)
    rows = train_rows(benchmark, cfg.train_instances, seed)
    if not rows:
        from r2bench.errors import R2BenchError

        raise R2BenchError(f"benchmark {benchmark.path} has no train instances ({cfg.train_instances})")
    eval_rows = benchmark.split(cfg.eval_split).head(cfg.eval_instances).to_dicts() if cfg.eval_instances else []
    meta = {"variant": cfg.variant, "seed": seed, "benchmark": str(benchmark.path),
            "benchmark_fingerprint": benchmark.fingerprint, "processes": engine.world_size,
            "engine": engine.kind}
    with bar(total=cfg.steps, desc=f"RL {cfg.variant}", unit="step", initial=trainer.step, disable=not main) as pbar:
        while trainer.step < cfg.steps:
            # the global batch: the same seeded draw on every process (each trains its users' share)
            rng = np.random.default_rng(hash_seed(seed, trainer.step, 1))
            batch = [rows[i] for i in rng.choice(len(rows), size=min(cfg.instances_per_step, len(rows)), replace=False)]
            entry = trainer.train_step(batch)
            if eval_rows and (trainer.step % cfg.eval_every == 0 or trainer.step == cfg.steps):
                entry.greedy_ndcg = trainer.evaluate(eval_rows)
            if logger is not None:
                logger.write(entry)
            pbar.update(1)
            pbar.set_postfix(reward=f"{entry.reward:.3f}", clip=f"{entry.clip_fraction:.2f}",
                             tok_s=f"{entry.tokens_per_s:.0f}")
            if cfg.checkpoint_every and (trainer.step % cfg.checkpoint_every == 0 or trainer.step == cfg.steps):
                ckpt.save(trainer.step, engine, trainer.policy, tokenizer, trainer.optimizer,
                          {"config": asdict(cfg), **meta}, save_model=not trainer.mlp_only)
    final = out / "final"
    full = engine.policy_state_dict(trainer.policy)  # collective where the engine shards the parameters
    if main:
        with atomic_path(final) as tmp:
            tmp.mkdir(parents=True)
            if not trainer.mlp_only:
                lm_state = None if full is None else {k[3:]: v for k, v in full.items() if k.startswith("lm.")}
                save_policy(model, tokenizer, tmp, merged=True, state_dict=lm_state)
            head.save(tmp / "head.safetensors",
                      state=None if full is None else {k[5:]: v for k, v in full.items() if k.startswith("head.")})
            write_json(tmp / "r2rank_train.json", {"stage": "rl", "steps": trainer.step, "config": asdict(cfg), **meta})
    engine.barrier()
    return final
