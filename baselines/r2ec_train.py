"""The RecPO training loop of :class:`baselines.r2ec.R2ecMethod`, on the accelerate engine (resumable).

One step (released ``RecPOTrainer.training_step``):

1. rollouts, no gradient: ``group_size`` sampled reasonings for each of the step's users
   (``users_per_step``), from the policy's LM or from the serving engine;
2. for each user (the released mini-batch: one user's group), ONE forward of the policy
   module (:func:`baselines.r2ec_model.make_policy`) gives the log-probs of its reasoning
   tokens, their ``<answer>`` states and the embeddings of the step's target items (the
   in-batch items, with gradient); the rewards of those states against the item table
   (catalog or candidates), z-scored advantages, the relabel mask and
   :func:`baselines.recpo.recpo_loss` follow, and the loss is backpropagated;
3. gradient clipping, one AdamW step; the item table's rows of the step's targets are
   refreshed (``self.item_hs[seq_labels] = item_h.detach()``).

The rewards need the loss's own forward pass only through detached states; because the
ratio is taken against the detached current log-probs and the weights change only at
the optimiser step, this gives the released two passes' numbers with one.

Several processes (``accelerate launch``): the step's users are sharded by user
(``r2bench.lm.engine``), each process runs its users' groups (padded with zero-weight
repeats to the same count), the engine averages the gradients, and each pass weighs
``world_size`` so that the result is the single process's sum over the step's users.
Every process evaluates the same val instances; the main one writes logs and checkpoints.

Resumption: ``<save_to>/checkpoints/step-NNNNNN`` (trainable weights, AdamW state, the
best state so far, the evaluation history and the reward's item table) every
``checkpoint_every`` steps and at every evaluation; a re-run continues from ``LATEST``.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def warmup_factor(step: int, warmup: int) -> float:
    """Linear warm-up then constant (released lr_scheduler_type="constant" with warmup_steps)."""
    return 1.0 if warmup <= 0 else min(1.0, (step + 1) / warmup)


def total_steps(n_rows: int, users_per_step: int, epochs: int) -> tuple[int, int]:
    """(steps per epoch, total steps)."""
    per = max(1, math.ceil(n_rows / max(1, users_per_step)))
    return per, per * max(1, epochs)


def new_work_dir(save_to: str | None) -> Path:
    return Path(save_to) if save_to else Path(tempfile.mkdtemp(prefix="r2ec-"))


def now() -> float:
    return time.perf_counter()


def train_r2ec(m, benchmark) -> dict[str, Any]:
    """Train ``m`` (an :class:`~baselines.r2ec.R2ecMethod`) on ``benchmark``; returns its ``info``."""
    import torch

    from baselines.r2ec_model import ServedPolicy, item_embeddings, user_pass
    from baselines.recpo import group_advantages, recpo_loss, relabel_mask, rewards, similarity
    from r2bench.lm.checkpoints import CSVLog
    from baselines.trainable import (
        Checkpoints,
        held_out_rows,
        load_trainable_state,
        mean_ndcg10,
        sample_train_rows,
        trainable_state,
    )
    from r2bench.lm.engine import Engine
    from r2bench.progress import bar
    from r2bench.stablehash import hash_seed

    c, seed = m.config, m.seed
    engine = m.engine if m.engine is not None else Engine()
    torch.manual_seed(hash_seed(seed, 3))  # the same LoRA initialisation on every process
    m._prepare_training_model(engine.model_device(c.device))
    work = new_work_dir(c.save_to)
    user_prompt, item_prompt = m._prompter(benchmark)
    rows = sample_train_rows(benchmark, c.max_instances, seed, "r2ec")
    val_rows = held_out_rows(benchmark, "val", c.val_instances)
    catalog = [str(i) for i in benchmark.items["item_id"].to_list()]
    cat_index = {i: k for k, i in enumerate(catalog)}
    params = [p for p in m.model.parameters() if p.requires_grad]
    policy, opt = engine.prepare(m.policy, torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay),
                                 c.grad_clip)
    m.policy = engine.unwrap(policy)  # no-gradient passes (item tables, evaluation) use the module itself
    served = ServedPolicy(c, m.tokenizer, work, seed, publish=engine.is_main) if c.generator == "openai" else None
    ckpts, logger = Checkpoints(work), CSVLog(work / "log.csv")
    per_epoch, total = total_steps(len(rows), c.users_per_step, c.epochs)
    state: dict[str, Any] = {"step": 0, "best": -1.0, "best_step": -1, "bad": 0, "evals": [], "stopped": False}
    best_state = None
    last = ckpts.latest()
    if last is not None:
        state = Checkpoints.load(last, m.model, opt)
        best_state = Checkpoints.load_extra(last, "best")
        if engine.is_main:
            logger.truncate_after(state["step"])
        log.info("r2ec: resuming after step %d from %s", state["step"], last)
    dev = m.model.get_output_embeddings().weight.device
    pad = m._pad()
    t_start = now()

    def refresh_table() -> torch.Tensor:
        m._emb = {}
        was = m.model.training
        m.model.eval()
        e = item_embeddings(m.policy, [item_prompt(i) for i in catalog], pad, c.item_batch)
        if was:
            m.model.train()
        m._emb = {i: e[k] for k, i in enumerate(catalog)}
        return e.to(dev)

    def sync(step: int, name: str | None = None) -> None:
        served.sync(m.model, step, name)
        engine.barrier()  # the adapter is loaded before any process asks for it

    def evaluate(step: int) -> None:
        """Every process scores the same val instances, so all take the same decisions."""
        if served is not None and step > 0:
            sync(step)
        t0 = now()
        val = mean_ndcg10(m._score_rows(benchmark, val_rows, served), val_rows) if val_rows else float("nan")
        better = bool(val_rows) and val > state["best"]
        if better:
            nonlocal best_state
            state.update(best=val, best_step=step, bad=0)
            best_state = trainable_state(m.model)
        else:
            state["bad"] += 1
        state["evals"].append({"step": step, "val_ndcg10": val, "eval_s": now() - t0})
        log.info("r2ec step %d: val NDCG@10 %.4f (best %.4f at step %d)", step, val, state["best"], state["best_step"])
        if state["bad"] >= c.patience:
            state["stopped"] = True

    def save(step: int) -> None:
        extra = {"best": best_state} if best_state else {}
        if table is not None:  # the item table the rewards use (stale rows and all), so a resumed run is exact
            extra["table"] = {"table": table.detach().cpu()}
        if engine.is_main:
            ckpts.save(f"step-{step:06d}", m.model, opt, state, extra=extra)
        engine.barrier()

    table = None
    if c.reward_over == "catalog":
        saved = Checkpoints.load_extra(last, "table") if last is not None else None
        table = saved["table"].to(dev) if saved is not None else refresh_table()
    if state["step"] == 0 and c.eval_on_start and not state["evals"]:
        evaluate(0)
        save(0)
    if served is not None and state["step"] > 0:
        sync(state["step"])
    with bar(total=total, desc="R2ec RecPO", unit="step", initial=state["step"], disable=not engine.is_main) as pbar:
        while state["step"] < total and not state["stopped"]:
            step = state["step"]
            epoch, b = divmod(step, per_epoch)
            order = np.random.default_rng(hash_seed(seed, epoch, 7)).permutation(len(rows))
            users = [rows[i] for i in order[b * c.users_per_step:(b + 1) * c.users_per_step].tolist()]
            t0 = now()
            # this process's users of the global batch (padded with zero-weight repeats: equal passes everywhere)
            shard = engine.shard([str(r["user_id"]) for r in users])
            mine = sorted(set(shard.items))
            prompts = {i: user_prompt(users[i]) for i in mine}
            seeds = [hash_seed(seed, step, int(users[i]["instance_id"])) for i in mine]
            outs = dict(zip(mine, m._rollouts([prompts[i] for i in mine], greedy=False, seeds=seeds, served=served)))
            t_roll = now() - t0
            targets = [str(r["target"]) for r in users]
            target_prompts = [item_prompt(t) for t in targets]
            for g in opt.param_groups:
                g["lr"] = c.lr * warmup_factor(step, c.warmup_steps)
            policy.train()
            opt.zero_grad(set_to_none=True)
            logs: dict[str, list[float]] = {k: [] for k in ("token_loss", "item_loss", "tokens", "wrote", "target_prob",
                                                              "adv_sum")}
            sums = [0.0, 0.0, 0.0, 0.0]  # reward, ndcg, softmax prob, rollouts (own users only)
            item_h_last = None
            for j, (u, w) in enumerate(zip(shard.items, shard.weights)):
                row, prompt, out = users[u], prompts[u], outs[u]
                comps = [ids for ids, _ in out]
                with engine.micro_step(policy, last=j == len(shard.items) - 1):
                    # one forward: the user's reasonings (log-probs, <answer> states) and the step's target items
                    up = user_pass(policy, prompt, comps, pad, need_logprobs=True, items=target_prompts)
                    with torch.no_grad():
                        uh = up.user_h.detach()
                        if c.reward_over == "catalog":
                            sim = similarity(uh, table, c.similarity_temperature)
                            tgt = torch.tensor([cat_index[str(row["target"])]], device=sim.device)
                            mask = torch.zeros(len(catalog), dtype=torch.bool, device=sim.device)
                            hist = [cat_index[str(i)] for i in (row.get("history") or []) if str(i) in cat_index]
                            mask[hist] = True
                        else:
                            e = m._embed([str(i) for i in row["candidates"]], item_prompt).to(dev)
                            sim = similarity(uh, e, c.similarity_temperature)
                            tgt = torch.tensor([int(row["target_index"])], device=sim.device)
                            mask = None
                        r, nd, pr = rewards(sim.double(), tgt, mask, c.reward_ndcg_k, c.reward_softmax_weight)
                        adv = group_advantages(r.view(1, -1)).view(-1)
                        relabel = relabel_mask(adv.view(1, -1), c.relabel_topk).view(-1)
                    labels = torch.full((len(comps),), u, dtype=torch.long, device=dev)
                    loss, parts = recpo_loss(up.logps, up.mask, up.user_h, up.item_h, labels, adv.to(dev),
                                             relabel.to(dev), c.eps_low, c.eps_high, c.similarity_temperature,
                                             c.advantage_broadcast)
                    # released: one backward per user group, their gradients summed; under several processes the
                    # engine averages, so each process's passes weigh world_size (a padding repeat 0)
                    engine.backward(loss * (w * engine.world_size))
                item_h_last = up.item_h.detach()
                if w > 0:
                    sums = [sums[0] + float(r.sum()), sums[1] + float(nd.sum()), sums[2] + float(pr.sum()),
                            sums[3] + len(comps)]
                    logs["token_loss"].append(parts.token_loss)
                    logs["item_loss"].append(parts.item_loss)
                    logs["target_prob"].append(parts.target_prob)
                    logs["tokens"] += [len(x) for x in comps]
                    logs["wrote"] += [float(wr) for _, wr in out]
                    logs["adv_sum"].append(float(adv.sum()))
            gnorm = engine.step(policy, opt, c.grad_clip)
            m._emb = {}
            if table is not None and item_h_last is not None:  # released: self.item_hs[seq_labels] = item_h.detach()
                for k, t in enumerate(targets):
                    table[cat_index[t]] = item_h_last[k].float()
            state["step"] = step + 1
            if served is not None:
                sync(state["step"])
            tot = engine.sum(sums)
            n_roll = max(tot[3], 1.0)
            entry = {"step": step + 1, "epoch": epoch + 1, "reward": tot[0] / n_roll, "ndcg": tot[1] / n_roll,
                     "target_softmax": tot[2] / n_roll,
                     "token_loss": _mean(logs["token_loss"]), "item_loss": _mean(logs["item_loss"]),
                     "inbatch_target_prob": _mean(logs["target_prob"]),
                     "adv_sum_max": float(np.max(np.abs(logs["adv_sum"]))) if logs["adv_sum"] else 0.0,
                     "grad_norm": float("nan") if gnorm is None else gnorm,
                     "reasoning_tokens": _mean(logs["tokens"]), "wrote_answer": _mean(logs["wrote"]),
                     "lr": opt.param_groups[0]["lr"], "rollout_s": t_roll, "step_s": now() - t0}
            if engine.is_main:
                logger.write(entry)
            pbar.update(1)
            pbar.set_postfix(reward=f"{entry['reward']:.3f}", ndcg=f"{entry['ndcg']:.3f}")
            at_eval = c.eval_every > 0 and state["step"] % c.eval_every == 0
            if at_eval or state["step"] == total:
                if c.reward_over == "catalog":
                    table = refresh_table()
                evaluate(state["step"])
            if at_eval or state["step"] == total or (c.checkpoint_every and state["step"] % c.checkpoint_every == 0):
                save(state["step"])
    kept = "last"
    if c.select_best and best_state is not None:
        load_trainable_state(m.model, best_state)
        kept = f"step {state['best_step']}"
        if served is not None:
            sync(state["best_step"], name=f"r2ec-best-step-{state['best_step']:06d}")
    m.model.eval()
    m._emb = {}
    m._served = served
    if engine.is_main:
        m._save(work / "final")
    engine.barrier()
    return {"fitted": True, "train_instances": len(rows), "steps": state["step"], "total_steps": total,
            "stopped_early": bool(state["stopped"]), "kept": kept, "best_step": state["best_step"],
            "val_ndcg10_best": state["best"], "val_instances": len(val_rows), "evals": state["evals"],
            "fit_s": now() - t_start, "checkpoint": str(work / "final"), "generator": c.generator,
            "advantage_broadcast": c.advantage_broadcast, "reward_over": c.reward_over,
            "processes": engine.world_size}


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")
