"""The clipped token-level PPO objective (paper Eq. 6)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from r2bench.lm.policy import token_logprobs  # noqa: E402
from r2bench.r2rank.ppo import ppo_loss  # noqa: E402


def _policy(seed=0, n=3, t=5, v=7):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, t, v, generator=g, dtype=torch.float64, requires_grad=True)
    tokens = torch.randint(0, v, (n, t), generator=g)
    mask = torch.ones(n, t, dtype=torch.float64)
    mask[0, 3:] = 0  # padding at the end of the first sequence
    return logits, tokens, mask


@pytest.mark.parametrize("reduction", ["sum", "token-mean", "seq-mean"])
def test_ratio_one_gradient_equals_policy_gradient(reduction):
    logits, tokens, mask = _policy()
    adv = torch.tensor([1.0, -0.5, 0.3], dtype=torch.float64)
    lp = token_logprobs(logits, tokens)
    loss, stats = ppo_loss(lp, lp.detach(), adv, mask, clip_eps=0.2, reduction=reduction)
    (g_ppo,) = torch.autograd.grad(loss, logits)

    lp2 = token_logprobs(logits, tokens)
    per_tok = adv[:, None] * lp2 * mask
    if reduction == "sum":
        pg = per_tok.sum()
    elif reduction == "token-mean":
        pg = per_tok.sum() / mask.sum()
    else:
        pg = (per_tok.sum(-1) / mask.sum(-1)).mean()
    (g_pg,) = torch.autograd.grad(-pg, logits)
    assert torch.allclose(g_ppo, g_pg, atol=1e-12)
    assert g_ppo.abs().sum() > 0
    assert stats.clip_fraction == 0.0 and stats.clip_active == 0.0 and stats.ratio_mean == pytest.approx(1.0)
    assert stats.n_tokens == 13
    # the padded positions get no gradient at all
    assert torch.all(g_ppo[0, 3:] == 0)


def test_outside_trust_region_clipped_terms_give_no_gradient():
    eps = 0.2
    logits, tokens, mask = _policy(seed=1, n=4, t=3)
    lp = token_logprobs(logits, tokens)
    # old log-probs chosen so that ratios are exp(+0.5) (> 1+eps) or exp(-0.5) (< 1-eps)
    shift = torch.tensor([0.5, -0.5, 0.5, -0.5], dtype=torch.float64)[:, None].expand(4, 3)
    old = lp.detach() - shift
    adv = torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64)
    loss, stats = ppo_loss(lp, old, adv, mask, clip_eps=eps, reduction="sum")
    (grad,) = torch.autograd.grad(loss, logits)
    # rows 0 (ratio>1+eps, A>0) and 1 (ratio<1-eps, A<0): clipped -> zero gradient
    assert torch.all(grad[0] == 0) and torch.all(grad[1] == 0)
    # rows 2 (ratio>1+eps, A<0) and 3 (ratio<1-eps, A>0): the unclipped term is the min -> gradient
    assert grad[2].abs().sum() > 0 and grad[3].abs().sum() > 0
    assert stats.clip_fraction == pytest.approx(1.0)  # every ratio is outside [0.8, 1.2]
    assert stats.clip_active == pytest.approx(0.5)  # half of them have their clipped term active
    # and that gradient is the ratio-weighted policy gradient of those rows
    lp2 = token_logprobs(logits, tokens)
    ratio = torch.exp(lp2 - old)
    ref = -(ratio[2:] * adv[2:, None]).sum()
    (g_ref,) = torch.autograd.grad(ref, logits)
    assert torch.allclose(grad[2:], g_ref[2:], atol=1e-12)


def test_inside_trust_region_not_clipped_and_kl_positive():
    logits, tokens, mask = _policy(seed=2)
    lp = token_logprobs(logits, tokens)
    old = lp.detach() - 0.05
    loss, stats = ppo_loss(lp, old, torch.ones(3, dtype=torch.float64), mask, clip_eps=0.2)
    assert stats.clip_fraction == 0.0
    assert stats.approx_kl > 0
    with pytest.raises(ValueError):
        ppo_loss(lp, old, torch.ones(3), mask, reduction="max")


def test_token_logprobs_matches_log_softmax():
    logits, tokens, _ = _policy(seed=3)
    ref = torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1)
    assert torch.allclose(token_logprobs(logits, tokens), ref.float(), atol=1e-6)
