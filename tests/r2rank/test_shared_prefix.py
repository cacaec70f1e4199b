"""Shared-prefix training forward: the same values and gradients as running every row in full."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


def _tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0)
    return LlamaForCausalLM(cfg).eval()


def test_prefix_forward_equals_each_row_alone_with_gradients():
    from r2bench.lm.shared_prefix import pad_rows, prefix_forward

    model = _tiny_llama()
    g = torch.Generator().manual_seed(1)
    prefix = torch.randint(1, 97, (23,), generator=g).tolist()
    rows = [torch.randint(1, 97, (n,), generator=g).tolist() for n in (5, 1, 9)]
    ids, mask = pad_rows(rows, 0, "cpu", left=True)
    h = prefix_forward(model, prefix, ids, mask)
    last = h[:, -1]  # left padding: every row ends in the last column
    (last.square().sum()).backward()
    params = [p for p in model.model.parameters()]  # the decoder (the LM head is not used here)
    shared_grads = [p.grad.clone() for p in params]
    model.zero_grad()
    alone = []
    for r in rows:  # batch 1, no padding, no cache: the reference
        out = model.get_decoder()(input_ids=torch.tensor([prefix + r])).last_hidden_state[0, -1]
        alone.append(out)
    ref = torch.stack(alone)
    ref.square().sum().backward()
    assert torch.allclose(last, ref, atol=1e-5)
    # float32 summation order differs: compare each gradient tensor by its relative norm error
    assert all(float((a - p.grad).norm()) <= 1e-4 * float(p.grad.norm()) + 1e-7 for a, p in zip(shared_grads, params))
    assert any(a.abs().sum() > 0 for a in shared_grads)


def test_split_prefix_keeps_one_token_per_row():
    from r2bench.lm.shared_prefix import split_prefix

    prefix, rest = split_prefix([[1, 2, 3, 4], [1, 2, 3, 5, 6], [1, 2, 3, 4]])
    assert prefix == [1, 2, 3] and rest == [[4], [5, 6], [4]]
    prefix, rest = split_prefix([[7, 8]])
    assert prefix == [7] and rest == [[8]]


def test_sft_losses_equal_each_example_run_alone():
    """The SFT losses (shared prefix, right padding) equal a plain per-example cross-entropy."""
    from r2bench.lm.examples import prefix_sft_loss
    from r2bench.r2rank.sft import sft_loss

    model = _tiny_llama(3)
    g = torch.Generator().manual_seed(4)
    context = torch.randint(1, 97, (30,), generator=g).tolist()
    group = []
    for n_cand, n_ans in ((4, 2), (7, 3), (2, 2)):  # prompt = context + candidate; then the answer
        prompt = context + torch.randint(1, 97, (n_cand,), generator=g).tolist()
        group.append((prompt + torch.randint(1, 97, (n_ans,), generator=g).tolist(), len(prompt)))
    ref = 0.0
    with torch.no_grad():
        for seq, n_prompt in group:  # batch 1, no padding, no cache, the full LM
            logits = model(input_ids=torch.tensor([seq])).logits[0]
            ref += float(torch.nn.functional.cross_entropy(logits[n_prompt - 1:-1], torch.tensor(seq[n_prompt:]),
                                                           reduction="sum"))
    total, n = prefix_sft_loss(model, group, 0)
    mean, n_mean = sft_loss(model, group, 0)
    assert n == n_mean == 7
    assert abs(float(total) - ref) < 1e-4 * abs(ref) and abs(float(mean) - ref / 7) < 1e-4 * abs(ref)
