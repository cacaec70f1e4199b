"""RecPO, R2ec's RL objective (``YRYangang/RRec``, ``trainers/RecPOTrainer.py``), as plain tensor functions.

For each user, ``G`` reasonings are sampled; reasoning ``i`` ends in ``<answer>``, where
the hidden state is the user embedding ``u_i``. With item embeddings ``e_j`` (the
items' own ``<answer>`` states) and similarity ``s_ij = cos(u_i, e_j) / tau``:

- **reward** (``compute_rec_score``): ``r_i = (1 - w) * NDCG@k(target | s_i.) + w * softmax(s_i.)[target]``,
  the ranking taken over the whole catalog with the user's history masked out
  (``compute_sim_val``), ``w = 0.05``, ``k = 1000``; :func:`rewards`;
- **advantage**: z-scored within the user's group, ``A_i = (r_i - mean) / (std + 1e-8)`` (unbiased std);
- **relabel mask**: the ``relabel_topk`` rollouts of the group with the highest advantage;
- **loss** (``batch_forward``): a clipped token-level policy term over the reasoning
  tokens (``epsilon_low`` 0.2, ``epsilon_high`` 0.28, no KL; the ratio is taken against
  the detached current log-probs, so it is 1 and only its gradient matters) plus an
  advantage-weighted, clipped in-batch softmax item term: ``u_i`` against the targets of
  the step's users, the relabelled rollouts only.

**Per-sequence advantages vs the released broadcast.** In ``batch_forward`` the
advantages ``[B]`` become ``[B, 1]`` and are unsqueezed again when multiplied with the
per-token ratios ``[B, T]``, which broadcasts to ``[B, B, T]``: every sequence's tokens
are weighted by the *sum* of the mini-batch's advantages. The item term does the same
(``[B, 1, 1] x [B, 1]``). With the defaults a mini-batch is one user's ``G`` rollouts, whose
z-scored advantages sum to zero, so the reasoning tokens get (up to rounding) no
gradient. :func:`recpo_loss` computes the intended per-sequence weighting by default,
and the released arithmetic exactly with ``broadcast="released"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

Broadcast = Literal["per-sequence", "released"]


def similarity(user_h: torch.Tensor, item_h: torch.Tensor, temperature: float = 0.02) -> torch.Tensor:
    """``cos(u_i, e_j) / temperature`` as ``[n_users, n_items]`` (released ``Similarity``, cosine, normalised)."""
    u = F.normalize(user_h.float(), p=2, dim=-1)
    e = F.normalize(item_h.float(), p=2, dim=-1)
    return u @ e.T / temperature


def ndcg_of_target(sim: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    """NDCG@k of the one relevant item per row: ``1 / log2(rank + 1)`` if ``rank <= k`` else 0.

    ``rank`` is 1 + the number of items scoring strictly higher (the released ``topk`` ranking,
    ties aside).
    """
    t = sim.gather(1, target.view(-1, 1))
    rank = (sim > t).sum(dim=1).to(torch.float64) + 1.0
    return torch.where(rank <= k, 1.0 / torch.log2(rank + 1.0), torch.zeros_like(rank))


def rewards(sim: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, ndcg_k: int = 1000,
            softmax_weight: float = 0.05) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(reward, ndcg, softmax prob)`` per row of ``sim [G, N]``; ``mask [N]`` (or ``[G, N]``) True = excluded
    (the user's history), set to the dtype's minimum as released."""
    sim = sim.detach().clone()
    target = target.view(-1).to(sim.device).expand(sim.shape[0])
    if mask is not None:
        m = mask.to(sim.device).bool()
        sim = sim.masked_fill(m if m.dim() == 2 else m.unsqueeze(0).expand_as(sim), torch.finfo(sim.dtype).min)
    ndcg = ndcg_of_target(sim, target, ndcg_k).to(sim.dtype)
    prob = sim.softmax(dim=-1).gather(1, target.view(-1, 1)).squeeze(1)
    return (1.0 - softmax_weight) * ndcg + softmax_weight * prob, ndcg, prob


def group_advantages(r: torch.Tensor) -> torch.Tensor:
    """Z-scores within each group: ``r [U, G]`` -> ``(r - mean) / (std + 1e-8)`` (ones when ``G == 1``, as released)."""
    if r.shape[-1] == 1:
        return torch.ones_like(r)
    return (r - r.mean(dim=-1, keepdim=True)) / (r.std(dim=-1, keepdim=True) + 1e-8)


def relabel_mask(adv: torch.Tensor, topk: int) -> torch.Tensor:
    """True for the ``topk`` rollouts of each group (rows of ``adv [U, G]``) with the highest advantage."""
    k = min(max(int(topk), 1), adv.shape[-1])
    idx = adv.topk(k, dim=-1).indices
    return torch.zeros_like(adv, dtype=torch.bool).scatter_(-1, idx, True)


@dataclass
class RecPOParts:
    """The two terms of the loss (detached floats) for logging."""

    token_loss: float
    item_loss: float
    target_prob: float


def recpo_loss(
    logps: torch.Tensor,
    mask: torch.Tensor,
    user_h: torch.Tensor,
    item_h: torch.Tensor,
    labels: torch.Tensor,
    advantages: torch.Tensor,
    relabel: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    temperature: float = 0.02,
    broadcast: Broadcast = "per-sequence",
) -> tuple[torch.Tensor, RecPOParts]:
    """The RecPO loss of one mini-batch of ``B`` rollouts.

    logps, mask: ``[B, T]`` log-probs of the reasoning tokens (with the closing ``<answer>``) and
    which of them count; user_h ``[B, H]``; item_h ``[M, H]`` the in-batch items (the step's
    targets); labels ``[B]`` the row of each rollout's target in ``item_h``; advantages ``[B]``;
    relabel ``[B]`` bool.
    """
    mask = mask.to(logps.dtype)
    adv = advantages.detach().to(logps.dtype)
    coef_1 = torch.exp(logps - logps.detach())
    coef_2 = torch.clamp(coef_1, 1 - eps_low, 1 + eps_high)
    probs_all = similarity(user_h, item_h, temperature).softmax(dim=-1)
    probs = probs_all.gather(1, labels.view(-1, 1))  # [B, 1]
    i_coef_1 = probs / probs.detach()
    i_coef_2 = torch.clamp(i_coef_1, 1 - eps_low, 1 + eps_high)
    weight = adv * relabel.to(adv.dtype)
    n_rows = logps.shape[0]
    if broadcast == "per-sequence":
        a = adv.unsqueeze(-1)  # [B, 1]: each sequence's tokens carry its own advantage
        per_token = -torch.min(coef_1 * a, coef_2 * a)
        token_loss = (per_token * mask).sum() / mask.sum().clamp_min(1.0)
        w = weight.unsqueeze(-1)  # [B, 1]
        item_loss = (-torch.min(i_coef_1 * w, i_coef_2 * w)).mean()
    elif broadcast == "released":
        a = adv.unsqueeze(-1)  # advantages = batch["advantages"].unsqueeze(-1)       [B, 1]
        per_token = -torch.min(coef_1 * a.unsqueeze(-1), coef_2 * a.unsqueeze(-1))  # [B, 1, 1] x [B, T] -> [B, B, T]
        token_loss = (per_token * mask).sum() / mask.sum().clamp_min(1.0) / n_rows
        w = weight.unsqueeze(-1)  # _gathered_advantages * relabel_mask.unsqueeze(-1)    [B, 1]
        item = -torch.min(i_coef_1 * w.unsqueeze(-1), i_coef_2 * w.unsqueeze(-1))  # [B, 1, 1] x [B, 1] -> [B, B, 1]
        item_loss = item.sum(dim=-1).mean()
    else:
        raise ValueError(f"advantage_broadcast {broadcast!r}: expected per-sequence or released")
    parts = RecPOParts(float(token_loss.detach()), float(item_loss.detach()), float(probs.detach().mean()))
    return item_loss + token_loss, parts
