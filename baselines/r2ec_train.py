"""The RecPO training loop of :class:`baselines.r2ec.R2ecMethod` (one process; resumable).

One step (released ``RecPOTrainer.training_step``):

1. rollouts, no gradient: ``group_size`` sampled reasonings for each of the step's users
   (``users_per_step``), from the policy or from the serving engine;
2. for each user (the released mini-batch: one user's group): one forward pass over its
   reasonings (log-probs of the reasoning tokens and the ``<answer>`` states), the rewards
   of those states against the item table (catalog or candidates), z-scored advantages,
   the relabel mask, a forward pass over the step's target items (the in-batch items,
   with gradient) and :func:`baselines.recpo.recpo_loss`, backpropagated;
3. gradient clipping, one AdamW step; the item table's rows of the step's targets are
   refreshed (``self.item_hs[seq_labels] = item_h.detach()``).

The rewards need the loss's own forward pass only through detached states; because the
ratio is taken against the detached current log-probs and the weights change only at
the optimiser step, this gives the released two passes' numbers with one.

Resumption: ``<save_to>/checkpoints/step-NNNNNN`` (trainable weights, AdamW state, the
best state so far, the evaluation history) every ``checkpoint_every`` steps and at every
evaluation; a re-run continues from ``LATEST`` (the item table is recomputed).
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
    from baselines.trainable import (
        Checkpoints,
        CSVLog,
        held_out_rows,
        load_trainable_state,
        mean_ndcg10,
        sample_train_rows,
        trainable_state,
    )
    from r2bench.progress import bar
    from r2bench.stablehash import hash_seed

    c, seed = m.config, m.seed
    torch.manual_seed(hash_seed(seed, 3))
    m._prepare_training_model()
    work = new_work_dir(c.save_to)
    user_prompt, item_prompt = m._prompter(benchmark)
    rows = sample_train_rows(benchmark, c.max_instances, seed, "r2ec")
    val_rows = held_out_rows(benchmark, "val", c.val_instances)
    catalog = [str(i) for i in benchmark.items["item_id"].to_list()]
    cat_index = {i: k for k, i in enumerate(catalog)}
    params = [p for p in m.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
    served = ServedPolicy(c, m.tokenizer, work, seed) if c.generator == "openai" else None
    ckpts, logger = Checkpoints(work), CSVLog(work / "log.csv")
    per_epoch, total = total_steps(len(rows), c.users_per_step, c.epochs)
    state: dict[str, Any] = {"step": 0, "best": -1.0, "best_step": -1, "bad": 0, "evals": [], "stopped": False}
    best_state = None
    last = ckpts.latest()
    if last is not None:
        state = Checkpoints.load(last, m.model, opt)
        best_state = Checkpoints.load_extra(last, "best")
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

    def evaluate(step: int) -> None:
        if served is not None and step > 0:
            served.sync(m.model, step)
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
        ckpts.save(f"step-{step:06d}", m.model, opt, state, extra=extra)

    table = None
    if c.reward_over == "catalog":
        saved = Checkpoints.load_extra(last, "table") if last is not None else None
        table = saved["table"].to(dev) if saved is not None else refresh_table()
    if state["step"] == 0 and c.eval_on_start and not state["evals"]:
        evaluate(0)
        save(0)
    if served is not None and state["step"] > 0:
        served.sync(m.model, state["step"])
    with bar(total=total, desc="R2ec RecPO", unit="step", initial=state["step"]) as pbar:
        while state["step"] < total and not state["stopped"]:
            step = state["step"]
            epoch, b = divmod(step, per_epoch)
            order = np.random.default_rng(hash_seed(seed, epoch, 7)).permutation(len(rows))
            users = [rows[i] for i in order[b * c.users_per_step:(b + 1) * c.users_per_step].tolist()]
            t0 = now()
            prompts = [user_prompt(r) for r in users]
            seeds = [hash_seed(seed, step, int(r["instance_id"])) for r in users]
            outs = m._rollouts(prompts, greedy=False, seeds=seeds, served=served)
            t_roll = now() - t0
            targets = [str(r["target"]) for r in users]
            for g in opt.param_groups:
                g["lr"] = c.lr * warmup_factor(step, c.warmup_steps)
            m.model.train()
            opt.zero_grad(set_to_none=True)
            logs: dict[str, list[float]] = {k: [] for k in ("reward", "ndcg", "prob", "token_loss", "item_loss",
                                                              "tokens", "wrote", "target_prob", "adv_sum")}
            item_h_last = None
            for u, (row, prompt, out) in enumerate(zip(users, prompts, outs)):
                comps = [ids for ids, _ in out]
                up = user_pass(m.policy, prompt, comps, pad, need_logprobs=True)
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
                item_h = _item_states(m, targets, item_prompt, pad)
                labels = torch.full((len(comps),), u, dtype=torch.long, device=dev)
                loss, parts = recpo_loss(up.logps, up.mask, up.user_h, item_h, labels, adv.to(dev), relabel.to(dev),
                                         c.eps_low, c.eps_high, c.similarity_temperature, c.advantage_broadcast)
                loss.backward()
                item_h_last = item_h.detach()
                logs["reward"] += r.tolist()
                logs["ndcg"] += nd.tolist()
                logs["prob"] += pr.tolist()
                logs["token_loss"].append(parts.token_loss)
                logs["item_loss"].append(parts.item_loss)
                logs["target_prob"].append(parts.target_prob)
                logs["tokens"] += [len(x) for x in comps]
                logs["wrote"] += [float(w) for _, w in out]
                logs["adv_sum"].append(float(adv.sum()))
            gnorm = float(torch.nn.utils.clip_grad_norm_(params, c.grad_clip if c.grad_clip > 0 else float("inf")))
            opt.step()
            m._emb = {}
            if table is not None and item_h_last is not None:  # released: self.item_hs[seq_labels] = item_h.detach()
                for k, t in enumerate(targets):
                    table[cat_index[t]] = item_h_last[k].float()
            state["step"] = step + 1
            if served is not None:
                served.sync(m.model, state["step"])
            entry = {"step": step + 1, "epoch": epoch + 1, "reward": float(np.mean(logs["reward"])),
                     "ndcg": float(np.mean(logs["ndcg"])), "target_softmax": float(np.mean(logs["prob"])),
                     "token_loss": float(np.mean(logs["token_loss"])), "item_loss": float(np.mean(logs["item_loss"])),
                     "inbatch_target_prob": float(np.mean(logs["target_prob"])),
                     "adv_sum_max": float(np.max(np.abs(logs["adv_sum"]))), "grad_norm": gnorm,
                     "reasoning_tokens": float(np.mean(logs["tokens"])), "wrote_answer": float(np.mean(logs["wrote"])),
                     "lr": opt.param_groups[0]["lr"], "rollout_s": t_roll, "step_s": now() - t0}
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
            served.sync(m.model, state["best_step"], name=f"r2ec-best-step-{state['best_step']}")
    m.model.eval()
    m._emb = {}
    m._served = served
    m._save(work / "final")
    return {"fitted": True, "train_instances": len(rows), "steps": state["step"], "total_steps": total,
            "stopped_early": bool(state["stopped"]), "kept": kept, "best_step": state["best_step"],
            "val_ndcg10_best": state["best"], "val_instances": len(val_rows), "evals": state["evals"],
            "fit_s": now() - t_start, "checkpoint": str(work / "final"), "generator": c.generator,
            "advantage_broadcast": c.advantage_broadcast, "reward_over": c.reward_over}


def _item_states(m, item_ids: list[str], item_prompt, pad: int):
    """Embeddings of the in-batch items with gradient (one shared-prefix forward pass)."""
    from baselines.r2ec_model import last_states

    return last_states(m.policy, [item_prompt(i) for i in item_ids], pad).float()
