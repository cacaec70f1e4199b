"""Training the scoring head on frozen decision states (``r2bench r2rank head``).

With the LLM frozen, one RL step of the ``mlp-only`` ablation is: read the decision
states of the batch's instances, score them with the head, sample rankings from
Plackett-Luce, reward them with NDCG@10 and ascend ``(rho - b) log P(tau|s)`` (paper
Eq. 5; ``r2bench.r2rank.plackett_luce``, the same loss as ``r2bench.r2rank.rl``). The
states come from a :class:`CachedStates` (the feature cache of
``r2bench.r2rank.features``) or, for comparison, from an :class:`OnlineStates` that
computes them with the model on every call; both give the same head (tested).

An epoch visits every train instance once, in a seeded order, ``instances_per_step``
instances per optimiser step; under CoT, epoch ``e`` reads reasoning sample
``(e - 1 + i) mod S`` of instance ``i``, so every cached sample is used. After each
epoch the head ranks the held-out split by its scores on the greedy states (NDCG@10
with exact ties, as ``r2bench evaluate`` computes it); training stops after
``patience`` epochs without improvement and keeps the best head. Epoch 0 is the
untrained head: a zero output layer ties every score, i.e. chance level.

``objective=listwise-ce`` trains the same head as a supervised probe (softmax
cross-entropy over the K scores with the target as the label): how much ranking
signal the states hold at all, whatever RL makes of it.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from r2bench.r2rank import plackett_luce
from r2bench.stablehash import hash_seed

log = logging.getLogger(__name__)


class CachedStates:
    """Decision states read from a :class:`r2bench.r2rank.features.FeatureSet`."""

    def __init__(self, features: Any):
        self.features = features
        self.n, self.n_samples = features.n, features.n_samples
        self.target = features.target.long()

    def states(self, idx: Sequence[int], samples: Sequence[int]) -> torch.Tensor:
        return self.features.hidden[torch.as_tensor(list(idx)), torch.as_tensor(list(samples))]


class OnlineStates:
    """Decision states computed with the frozen model on every call (no cache)."""

    def __init__(self, computer: Any, rows: list[dict[str, Any]]):
        self.computer, self.rows = computer, rows
        self.n, self.n_samples = len(rows), computer.samples
        self.target = torch.tensor([int(r["target_index"]) for r in rows], dtype=torch.long)

    def states(self, idx: Sequence[int], samples: Sequence[int]) -> torch.Tensor:
        return torch.stack([self.computer.sample(self.rows[i], j)[0] for i, j in zip(idx, samples)])


@dataclass
class EpochLog:
    """One row of the head run's ``log.csv`` (epoch 0: the untrained head)."""

    epoch: int
    steps: int
    train_loss: float
    train_reward: float  # mean NDCG@k of the sampled rankings (reinforce); nan for the probe
    train_ndcg10: float  # NDCG@10 of the head's ranking of the train instances (first sample)
    val_ndcg10: float
    best_val_ndcg10: float
    epoch_s: float


@dataclass
class HeadResult:
    head: Any  # the best head (eval mode)
    best_epoch: int
    best_val_ndcg10: float
    epochs_run: int
    stopped_early: bool
    history: list[EpochLog]


def ranking_ndcg10(head: Any, source: Any, batch: int = 256) -> float:
    """Mean NDCG@10 of the head's ranking of every instance of ``source`` (sample 0; exact ties)."""
    from r2bench.eval.metrics import per_instance_metrics

    was = head.training
    head.eval()
    with torch.no_grad():
        scores = [head(source.states(list(range(i, min(i + batch, source.n))), [0] * (min(i + batch, source.n) - i)))
                  for i in range(0, source.n, batch)]
    head.train(was)
    s = torch.cat(scores).double().numpy()
    return float(per_instance_metrics(s, source.target.numpy(), ["ndcg@10"])["ndcg@10"].mean())


def head_step_loss(cfg: Any, head: Any, states: torch.Tensor, target: torch.Tensor,
                   generator: torch.Generator) -> tuple[torch.Tensor, float]:
    """(loss, mean sampled reward) of one batch of instances: states ``[B, K, H]``, targets ``[B]``."""
    s = head(states)
    if cfg.objective == "listwise-ce":
        return torch.nn.functional.cross_entropy(s, target), float("nan")
    taus = plackett_luce.sample_rankings(s.detach(), cfg.ranking_samples, generator=generator)
    rel = torch.nn.functional.one_hot(target, s.shape[-1]).to(torch.float64)
    rewards = plackett_luce.ndcg_at_k(taus, rel, cfg.reward_k)
    return plackett_luce.reinforce_loss(s, taus, rewards.to(s.dtype), cfg.baseline), float(rewards.mean())


def new_head(cfg: Any, hidden_size: int, seed: int) -> Any:
    """A fresh head (zero output layer: the untrained ranking ties, i.e. chance), seeded as ``run_rl`` seeds it."""
    from r2bench.r2rank.rl import fresh_head

    torch.manual_seed(hash_seed(seed, 17))
    return fresh_head(hidden_size, cfg.head_hidden, dropout=float(cfg.head_dropout))


def train_head(cfg: Any, train: Any, val: Any, seed: int = 0, head: Any = None,
               on_epoch: Callable[[EpochLog], None] | None = None) -> HeadResult:
    """Train a head on ``train`` states with early stopping on ``val`` (see the module docstring)."""
    if head is None:
        probe = train.states([0], [0])
        head = new_head(cfg, int(probe.shape[-1]), seed)
    head.train()
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr_head, weight_decay=cfg.weight_decay)
    bsz = max(1, int(cfg.instances_per_step))
    best = ranking_ndcg10(head, val)
    row0 = EpochLog(0, 0, float("nan"), float("nan"), ranking_ndcg10(head, train), best, best, 0.0)
    history, best_state, best_epoch, bad, steps = [row0], copy.deepcopy(head.state_dict()), 0, 0, 0
    if on_epoch:
        on_epoch(row0)
    stopped = False
    for epoch in range(1, int(cfg.epochs) + 1):
        t0 = time.perf_counter()
        order = np.random.default_rng(hash_seed(seed, epoch, 3)).permutation(train.n).tolist()
        losses, rewards = [], []
        for b in range(0, train.n, bsz):
            idx = order[b:b + bsz]
            samples = [(epoch - 1 + i) % train.n_samples for i in idx]
            gen = torch.Generator().manual_seed(hash_seed(seed, epoch, b, 5))
            loss, reward = head_step_loss(cfg, head, train.states(idx, samples), train.target[idx], gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip and cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(head.parameters(), cfg.grad_clip)
            opt.step()
            steps += 1
            losses.append(float(loss.detach()))
            rewards.append(reward)
        val_ndcg = ranking_ndcg10(head, val)
        if val_ndcg > best + cfg.min_delta:
            best, best_epoch, bad = val_ndcg, epoch, 0
            best_state = copy.deepcopy(head.state_dict())
        else:
            bad += 1
        row = EpochLog(epoch, steps, float(np.mean(losses)), float(np.mean(rewards)), ranking_ndcg10(head, train),
                       val_ndcg, best, time.perf_counter() - t0)
        history.append(row)
        if on_epoch:
            on_epoch(row)
        if bad >= int(cfg.patience):
            stopped = True
            break
    head.load_state_dict(best_state)
    head.eval()
    return HeadResult(head, best_epoch, best, history[-1].epoch, stopped, history)


def run_head_training(cfg: Any, benchmark: Any, out_dir: str | Path, seed: int = 0) -> Path:
    """Build (or resume) the feature cache, train the head, export ``<out>/final/head.safetensors``.

    ``<out>/log.csv`` has one row per epoch; ``<out>/final/r2rank_train.json`` records the
    config, the best epoch and its held-out NDCG@10, and the caches used. Score the test
    split with ``r2bench run --method r2rank --set head=<out>/final/head.safetensors``
    and the same backbone / no_cot / max_reasoning_tokens.
    """
    from r2bench.atomic import atomic_path, write_json
    from r2bench.r2rank.features import build_features, load_split
    from r2bench.lm.checkpoints import CSVLog

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(cfg.features_dir) if cfg.features_dir else out / "features"
    t0 = time.perf_counter()
    folders = build_features(cfg, benchmark, root, seed=seed)
    t_feat = time.perf_counter() - t0
    train, val = CachedStates(load_split(folders["train"])), CachedStates(load_split(folders[cfg.eval_split]))
    (out / "log.csv").unlink(missing_ok=True)  # head training restarts (minutes); the features resume
    logger = CSVLog(out / "log.csv")
    if cfg.threads > 0:
        torch.set_num_threads(int(cfg.threads))

    def report(row: EpochLog) -> None:
        logger.write(row)
        log.info("epoch %d: loss %.4f reward %.4f train NDCG@10 %.4f val NDCG@10 %.4f (best %.4f)", row.epoch,
                 row.train_loss, row.train_reward, row.train_ndcg10, row.val_ndcg10, row.best_val_ndcg10)

    t1 = time.perf_counter()
    result = train_head(cfg, train, val, seed=seed, on_epoch=report)
    final = out / "final"
    with atomic_path(final) as tmp:
        tmp.mkdir(parents=True)
        result.head.save(tmp / "head.safetensors")
        write_json(tmp / "r2rank_train.json", {
            "stage": "head", "objective": cfg.objective, "config": asdict(cfg), "seed": seed,
            "best_epoch": result.best_epoch, "best_val_ndcg@10": _finite(result.best_val_ndcg10),
            "epochs_run": result.epochs_run, "stopped_early": result.stopped_early,
            "train_instances": train.n, "eval_split": cfg.eval_split, "eval_instances": val.n,
            "features": {k: str(v) for k, v in folders.items()},
            "feature_keys": {"train": train.features.key["key_sha256"], cfg.eval_split: val.features.key["key_sha256"]},
            "benchmark": str(benchmark.path), "benchmark_fingerprint": benchmark.fingerprint,
            "features_s": round(t_feat, 2), "head_training_s": round(time.perf_counter() - t1, 2),
            "score_with": {"backbone": cfg.backbone, "adapter": cfg.adapter, "no_cot": cfg.no_cot,
                           "max_reasoning_tokens": cfg.max_reasoning_tokens},
        })
    return final


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
