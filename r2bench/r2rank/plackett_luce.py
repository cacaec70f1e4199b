"""The Plackett-Luce ranking distribution (paper Eq. 4) and its REINFORCE estimator (Eq. 5).

Given scores ``s`` of K candidates, Plackett-Luce puts on a ranking ``tau``
(``tau[k]`` = index of the candidate placed at position k, best first)

    P(tau | s) = prod_{k=1..K} exp(s_tau(k)) / sum_{j>=k} exp(s_tau(j)).

Everything here is vectorised over leading batch dimensions and over several
ranking samples per instance:

- :func:`log_prob`: ``log P(tau|s)``, computed stably with a reversed
  ``logcumsumexp`` (the denominators are suffix log-sum-exps of the scores in
  ranking order), never with ``exp``.
- :func:`sample_rankings`: exact sampling with the Gumbel-top-k trick: sorting
  ``s + Gumbel(0, 1)`` in decreasing order yields a ranking distributed exactly
  as ``P(.|s)`` (Yellott 1977; Kool et al. 2019).
- :func:`ndcg_at_k`: NDCG@k of rankings for graded relevance, the paper's
  definition (gain ``2^rel - 1``, discount ``1/log2(position + 1)``).
- :func:`reinforce_loss`: ``-mean[(rho - b) * log P(tau|s)]``, whose gradient is
  minus the REINFORCE estimate of ``grad E_tau[rho(tau)]``.

Baselines (``b``): ``"none"`` is the paper (Algorithm 1, line 9: ``rho * log P``).
``"mean"`` and ``"loo"`` are variance-reduction options and a documented deviation
from the paper: ``"loo"`` (leave-one-out: the mean reward of the *other* samples of
the same instance) keeps the estimator unbiased; ``"mean"`` (the mean over all
samples of the instance, including the sample itself) has a bias of factor
``(S-1)/S`` on the gradient, which only rescales it.
"""

from __future__ import annotations

from typing import Literal

import torch

Baseline = Literal["none", "mean", "loo"]


def log_prob(scores: torch.Tensor, rankings: torch.Tensor) -> torch.Tensor:
    """``log P(tau | s)`` for rankings of the candidates.

    scores: ``[..., K]`` (float); rankings: ``[..., S, K]`` (long, each row a
    permutation of ``0..K-1``, best first) or ``[..., K]``. Returns ``[..., S]``
    (or ``[...]``), differentiable with respect to ``scores``.
    """
    squeeze = rankings.dim() == scores.dim()
    if squeeze:
        rankings = rankings.unsqueeze(-2)
    s = scores.unsqueeze(-2).expand(*rankings.shape[:-1], scores.shape[-1])
    ordered = torch.gather(s, -1, rankings)  # scores in ranking order
    # denominators: log sum_{j >= k} exp(ordered_j), a suffix logsumexp
    suffix = torch.logcumsumexp(ordered.flip(-1), dim=-1).flip(-1)
    out = (ordered - suffix).sum(-1)
    return out.squeeze(-1) if squeeze else out


def sample_rankings(
    scores: torch.Tensor, n_samples: int = 1, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``n_samples`` rankings per instance drawn exactly from ``P(.|s)`` (Gumbel-top-k).

    scores: ``[..., K]``. Returns long ``[..., n_samples, K]`` (best first), on the
    scores' device. The uniforms are drawn on ``generator``'s device (the CPU without
    one). No gradient flows through the sampling; use :func:`log_prob` for that.
    """
    s = scores.detach().unsqueeze(-2).expand(*scores.shape[:-1], n_samples, scores.shape[-1])
    # drawn where the generator lives (a CUDA generator cannot draw on the CPU), then moved to the scores
    u = torch.rand(s.shape, generator=generator, dtype=torch.float64,
                   device=generator.device if generator is not None else "cpu").to(s.device)
    # Gumbel(0,1) = -log(-log U); clamp keeps U strictly inside (0, 1)
    eps = torch.finfo(torch.float64).tiny
    gumbel = -torch.log(-torch.log(u.clamp(eps, 1.0 - 1e-16)))
    return torch.argsort(s.double() + gumbel, dim=-1, descending=True)


def _discounts(k: int, device=None) -> torch.Tensor:
    return 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64, device=device))


def ndcg_at_k(rankings: torch.Tensor, relevance: torch.Tensor, k: int = 10) -> torch.Tensor:
    """NDCG@k of rankings (paper section 3.1), vectorised.

    rankings: ``[..., S, K]`` or ``[..., K]`` (long, best first); relevance:
    ``[..., K]`` graded labels of the candidates in their original order (e.g. one-hot
    for one positive). ``DCG@k = sum_{p<=k} (2^rel_tau(p) - 1) / log2(p + 1)``,
    divided by the DCG@k of the ideal ranking; an instance with no relevant
    candidate gets 0. Returns float64 ``[..., S]`` (or ``[...]``).
    """
    squeeze = rankings.dim() == relevance.dim()
    if squeeze:
        rankings = rankings.unsqueeze(-2)
    rel = relevance.to(torch.float64)
    kk = min(k, rel.shape[-1])
    disc = _discounts(kk, rel.device)
    gains = torch.pow(2.0, rel) - 1.0
    g = gains.unsqueeze(-2).expand(*rankings.shape[:-1], rel.shape[-1])
    dcg = (torch.gather(g, -1, rankings[..., :kk]) * disc).sum(-1)
    ideal = (torch.sort(gains, dim=-1, descending=True).values[..., :kk] * disc).sum(-1)
    ideal = ideal.unsqueeze(-1)
    out = torch.where(ideal > 0, dcg / ideal.clamp_min(1e-300), torch.zeros_like(dcg))
    return out.squeeze(-1) if squeeze else out


def baseline_values(rewards: torch.Tensor, baseline: Baseline = "none") -> torch.Tensor:
    """Per-sample baselines ``b`` for rewards ``[..., S]`` (samples of one instance on the last axis)."""
    if baseline == "none":
        return torch.zeros_like(rewards)
    n = rewards.shape[-1]
    if baseline == "mean":
        return rewards.mean(-1, keepdim=True).expand_as(rewards)
    if baseline == "loo":
        if n < 2:
            raise ValueError("baseline='loo' needs at least 2 ranking samples per instance")
        total = rewards.sum(-1, keepdim=True)
        return (total - rewards) / (n - 1)
    raise ValueError(f"unknown baseline {baseline!r}; expected none, mean or loo")


def reinforce_loss(
    scores: torch.Tensor, rankings: torch.Tensor, rewards: torch.Tensor, baseline: Baseline = "none"
) -> torch.Tensor:
    """Scalar loss whose gradient is the negated REINFORCE estimate of ``grad E[rho]``.

    scores ``[..., K]`` (requires grad), rankings ``[..., S, K]`` sampled from
    ``P(.|scores)``, rewards ``[..., S]`` (e.g. :func:`ndcg_at_k`). The loss is
    ``-mean over instances and samples of (rho - b) * log P(tau|s)``; its negative
    gradient averaged over many samples converges to ``grad_s E_{tau~P(.|s)}[rho]``.
    """
    adv = (rewards - baseline_values(rewards, baseline)).detach().to(scores.dtype)
    return -(adv * log_prob(scores, rankings)).mean()


def expected_ndcg_exact(scores: torch.Tensor, relevance: torch.Tensor, k: int = 10) -> torch.Tensor:
    """``E_{tau~P(.|s)}[NDCG@k]`` by enumerating all K! rankings (K <= 8; for tests and checks)."""
    import itertools

    n = scores.shape[-1]
    if n > 8:
        raise ValueError("exact enumeration is only for K <= 8")
    perms = torch.tensor(list(itertools.permutations(range(n))), dtype=torch.long, device=scores.device)
    perms = perms.expand(*scores.shape[:-1], *perms.shape)
    lp = log_prob(scores, perms)
    nd = ndcg_at_k(perms, relevance, k).to(lp.dtype)
    return (lp.exp() * nd).sum(-1)
