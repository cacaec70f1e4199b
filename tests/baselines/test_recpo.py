"""RecPO's pieces (rewards, advantages, the loss) against hand-computed values and the released arithmetic."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from baselines.recpo import (  # noqa: E402
    group_advantages,
    ndcg_of_target,
    recpo_loss,
    relabel_mask,
    rewards,
    similarity,
)


def test_reward_is_ndcg_over_the_catalog_with_history_masked_plus_softmax():
    sim = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0]], dtype=torch.float64)
    target = torch.tensor([2])
    r, nd, p = rewards(sim, target, None, ndcg_k=1000, softmax_weight=0.05)
    assert nd.item() == pytest.approx(1 / math.log2(4))  # rank 3
    assert p.item() == pytest.approx(math.exp(3) / sum(math.exp(x) for x in (5, 4, 3, 2, 1)))
    assert r.item() == pytest.approx(0.95 * nd.item() + 0.05 * p.item())
    hist = torch.tensor([True, True, False, False, False])  # the two items above it are in the history
    r2, nd2, p2 = rewards(sim, target, hist, ndcg_k=1000, softmax_weight=0.05)
    assert nd2.item() == pytest.approx(1.0) and p2.item() == pytest.approx(math.exp(3) / (math.exp(3) + math.exp(2) + 1 * math.exp(1)))
    # the cut-off: rank 3 > k = 2 earns no NDCG, only the softmax part
    r3, nd3, _ = rewards(sim, target, None, ndcg_k=2, softmax_weight=0.05)
    assert nd3.item() == 0.0 and r3.item() == pytest.approx(0.05 * p.item())
    assert ndcg_of_target(sim, torch.tensor([0]), 10).item() == 1.0


def test_similarity_is_cosine_over_temperature():
    u = torch.tensor([[3.0, 0.0]])
    e = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    assert torch.allclose(similarity(u, e, 0.02), torch.tensor([[50.0, 0.0, 50 / math.sqrt(2)]]))


def test_advantages_sum_to_zero_within_each_group_and_relabel_picks_the_best():
    g = torch.Generator().manual_seed(0)
    r = torch.rand((6, 4), generator=g, dtype=torch.float64)
    r[5] = r[5] * 1e-6 + 0.3  # a group of nearly equal rewards: still zero-sum
    adv = group_advantages(r)
    assert adv.sum(dim=1).abs().max() < 1e-9
    assert torch.allclose(adv[:5].std(dim=1), torch.ones(5, dtype=torch.float64), atol=1e-6)
    assert 0.9 < adv[5].std() < 1.0  # the released +1e-8 on the std shows when the rewards barely differ
    assert torch.equal(group_advantages(r[:, :1]), torch.ones((6, 1), dtype=torch.float64))
    m = relabel_mask(adv, 2)
    assert m.sum(dim=1).tolist() == [2] * 6
    top2 = adv.topk(2, dim=1).indices
    assert all(m[i, top2[i]].all() for i in range(6))


def _released_batch_forward(per_token_logps, loss_mask, similarity_logits, labels, advantages_b, relabel_mask_b,
                            eps_low=0.2, eps_high=0.28):
    """``RecPOTrainer.batch_forward`` of YRYangang/RRec, transcribed line by line (one process, no gathering);
    ``similarity_logits`` is what ``compute_sim_train`` returns."""
    advantages = advantages_b.unsqueeze(-1)  # (B, 1)
    _batch_size = advantages.shape[0]
    relabel_mask = relabel_mask_b
    coef_1 = torch.exp(per_token_logps - per_token_logps.detach())
    coef_2 = torch.clamp(coef_1, 1 - eps_low, 1 + eps_high)
    per_token_loss1 = coef_1 * advantages.unsqueeze(-1)
    per_token_loss2 = coef_2 * advantages.unsqueeze(-1)
    per_token_loss = -torch.min(per_token_loss1, per_token_loss2)
    _gathered_advantages = advantages
    _gathered_advantages = _gathered_advantages * relabel_mask.float().unsqueeze(-1)
    similarity_ = similarity_logits.softmax(dim=-1)
    probs = similarity_.gather(dim=-1, index=labels.unsqueeze(-1))
    coef_1 = probs / probs.detach()
    coef_2 = torch.clamp(coef_1, 1 - eps_low, 1 + eps_high)
    item_loss1 = coef_1 * _gathered_advantages.unsqueeze(-1)
    item_loss2 = coef_2 * _gathered_advantages.unsqueeze(-1)
    item_loss = -torch.min(item_loss1, item_loss2)
    item_loss = (item_loss).sum(dim=-1).mean()
    tokens_loss = (per_token_loss * loss_mask).sum()
    tokens_loss /= loss_mask.sum()
    tokens_loss /= _batch_size
    return item_loss + tokens_loss


def _batch(seed: int = 0, g: int = 4, t: int = 7, h: int = 8, m: int = 3):
    gen = torch.Generator().manual_seed(seed)
    logps = (-torch.rand((g, t), generator=gen) * 3).requires_grad_(True)
    mask = torch.ones((g, t))
    mask[1, 5:] = 0
    mask[3, 2:] = 0
    user_h = torch.randn((g, h), generator=gen).requires_grad_(True)
    item_h = torch.randn((m, h), generator=gen).requires_grad_(True)
    labels = torch.full((g,), 1, dtype=torch.long)
    adv = group_advantages(torch.rand((1, g), generator=gen, dtype=torch.float64)).view(-1).float()
    relabel = relabel_mask(adv.view(1, -1), 2).view(-1)
    return logps, mask, user_h, item_h, labels, adv, relabel


def test_released_setting_reproduces_the_released_arithmetic():
    logps, mask, user_h, item_h, labels, adv, relabel = _batch()
    ours, _ = recpo_loss(logps, mask, user_h, item_h, labels, adv, relabel, broadcast="released")
    ours.backward()
    g_ours = [x.grad.clone() for x in (logps, user_h, item_h)]
    for x in (logps, user_h, item_h):
        x.grad = None
    theirs = _released_batch_forward(logps, mask, similarity(user_h, item_h, 0.02), labels, adv, relabel)
    theirs.backward()
    assert torch.allclose(ours, theirs, atol=1e-7)
    assert all(torch.allclose(a, x.grad, atol=1e-7) for a, x in zip(g_ours, (logps, user_h, item_h)))


def test_reasoning_tokens_get_gradient_per_sequence_and_almost_none_as_released():
    """One user's group, z-scored advantages summing to zero: the intended loss sends -A_i / n_tokens into
    every reasoning token of sequence i; the released broadcast sends (sum of A) x ..., i.e. ~0."""
    logps, mask, user_h, item_h, labels, adv, relabel = _batch(seed=1)
    assert abs(float(adv.sum())) < 1e-5
    grads = {}
    for mode in ("per-sequence", "released"):
        logps.grad = None
        loss, _ = recpo_loss(logps, mask, user_h, item_h, labels, adv, relabel, broadcast=mode)
        loss.backward()
        grads[mode] = logps.grad.clone()
    expected = -adv.unsqueeze(-1) * mask / mask.sum()
    assert torch.allclose(grads["per-sequence"], expected, atol=1e-7)
    per_seq, released = grads["per-sequence"].abs().max().item(), grads["released"].abs().max().item()
    assert per_seq > 1e-2 and released < 1e-7 and released < 1e-5 * per_seq, (per_seq, released)
    # masked positions never get gradient
    assert grads["per-sequence"][mask == 0].abs().max() == 0


def test_item_loss_reaches_only_relabelled_rollouts_per_sequence():
    logps, mask, user_h, item_h, labels, adv, relabel = _batch(seed=2)
    loss, _ = recpo_loss(logps.detach(), mask, user_h, item_h, labels, adv, relabel, broadcast="per-sequence")
    loss.backward()
    gnorm = user_h.grad.norm(dim=1)
    assert (gnorm[~relabel] == 0).all() and (gnorm[relabel] > 0).all()
    user_h.grad = None
    loss, _ = recpo_loss(logps.detach(), mask, user_h, item_h, labels, adv, relabel, broadcast="released")
    loss.backward()
    assert (user_h.grad.norm(dim=1) > 0).all()  # released: every rollout, weighted by the relabelled advantages' sum
