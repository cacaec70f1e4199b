"""Plackett-Luce: exact probabilities, exact sampling, unbiased REINFORCE gradient."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
scipy_stats = pytest.importorskip("scipy.stats")

from r2bench.r2rank import plackett_luce as pl  # noqa: E402


def _perms(k):
    return torch.tensor(list(itertools.permutations(range(k))), dtype=torch.long)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_log_prob_sums_to_one_over_all_permutations(k):
    g = torch.Generator().manual_seed(k)
    scores = torch.randn(3, k, generator=g, dtype=torch.float64) * 3
    perms = _perms(k).expand(3, -1, -1)
    total = pl.log_prob(scores, perms).exp().sum(-1)
    assert torch.allclose(total, torch.ones(3, dtype=torch.float64), atol=1e-12)


def test_log_prob_matches_formula_and_is_stable():
    s = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
    tau = torch.tensor([1, 2, 0])
    e = s.exp()
    expected = math.log(e[1] / e.sum()) + math.log(e[2] / (e[2] + e[0])) + 0.0
    assert pl.log_prob(s, tau).item() == pytest.approx(expected, abs=1e-12)
    # huge scores: a naive exp would overflow, logcumsumexp does not
    big = torch.tensor([1000.0, 999.0, -1000.0], dtype=torch.float64)
    lp = pl.log_prob(big, torch.tensor([0, 1, 2]))
    assert torch.isfinite(lp) and lp.item() == pytest.approx(-math.log1p(math.exp(-1.0)), abs=1e-9)


def test_gumbel_sampling_matches_exact_probabilities_chi_square():
    k, n = 4, 60_000
    scores = torch.tensor([1.2, 0.3, -0.5, 0.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(1234)
    samples = pl.sample_rankings(scores, n_samples=n, generator=g)
    assert samples.shape == (n, k)
    perms = _perms(k)
    index = {tuple(p.tolist()): i for i, p in enumerate(perms)}
    counts = np.zeros(len(perms))
    for row in samples.tolist():
        counts[index[tuple(row)]] += 1
    probs = pl.log_prob(scores, perms.unsqueeze(0)).exp().squeeze(0).numpy()
    stat, p = scipy_stats.chisquare(counts, probs * n)
    assert p > 1e-3, (stat, p)
    # and a wrong distribution (uniform) is firmly rejected by the same test
    _, p_uniform = scipy_stats.chisquare(counts, np.full(len(perms), n / len(perms)))
    assert p_uniform < 1e-12


def test_ndcg_at_k_values():
    rel = torch.tensor([0.0, 1.0, 0.0, 0.0])
    rankings = torch.tensor([[1, 0, 2, 3], [0, 1, 2, 3], [0, 2, 3, 1]])
    got = pl.ndcg_at_k(rankings, rel, k=10)
    assert torch.allclose(got, torch.tensor([1.0, 1 / math.log2(3), 1 / math.log2(5)], dtype=torch.float64))
    # cut-off: position 4 is outside NDCG@3
    assert pl.ndcg_at_k(rankings[2], rel, k=3).item() == 0.0
    # graded relevance, ideal ranking gives 1
    graded = torch.tensor([2.0, 0.0, 1.0])
    assert pl.ndcg_at_k(torch.tensor([0, 2, 1]), graded, k=3).item() == pytest.approx(1.0)
    # no relevant item: 0, not NaN
    assert pl.ndcg_at_k(torch.tensor([0, 1, 2]), torch.zeros(3), k=3).item() == 0.0


@pytest.mark.parametrize("baseline", ["none", "mean", "loo"])
def test_mean_reinforce_gradient_matches_exact_gradient(baseline):
    k, n = 4, 200_000
    rel = torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    base = torch.tensor([0.4, -0.2, 0.1, 0.7], dtype=torch.float64)

    s_exact = base.clone().requires_grad_(True)
    pl.expected_ndcg_exact(s_exact, rel, k=2).backward()
    exact = s_exact.grad.clone()

    s = base.clone().requires_grad_(True)
    g = torch.Generator().manual_seed(7)
    # 2000 "instances" of 100 samples each, so that mean/loo baselines have groups
    taus = pl.sample_rankings(s.expand(2000, k), n_samples=n // 2000, generator=g)
    rewards = pl.ndcg_at_k(taus, rel.expand(2000, k), k=2)
    loss = pl.reinforce_loss(s.expand(2000, k), taus, rewards, baseline=baseline)
    loss.backward()
    estimate = -s.grad
    if baseline == "mean":  # known (S-1)/S shrinkage of the self-including mean baseline
        estimate = estimate * 100 / 99
    # the gradient components are O(0.1); Monte Carlo error with 2e5 samples is ~1e-3
    assert torch.allclose(estimate, exact, atol=6e-3), (estimate, exact)
    assert exact[2] > 0 and exact.sum().abs() < 1e-12  # shift invariance of PL


def test_baselines_reduce_variance_and_loo_needs_two_samples():
    r = torch.tensor([[1.0, 0.0, 0.5]])
    assert torch.allclose(pl.baseline_values(r, "loo"), torch.tensor([[0.25, 0.75, 0.5]]))
    assert torch.allclose(pl.baseline_values(r, "mean"), torch.full((1, 3), 0.5))
    with pytest.raises(ValueError):
        pl.baseline_values(torch.ones(2, 1), "loo")
    with pytest.raises(ValueError):
        pl.baseline_values(r, "median")
