"""The policy module: every output of its one forward equals the plain per-row computation."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0)
    return LlamaForCausalLM(cfg).eval()


def _rows(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    context = torch.randint(1, 97, (17,), generator=g).tolist()
    prompts = [context + torch.randint(1, 97, (n,), generator=g).tolist() for n in (3, 1, 6)]
    responses = [torch.randint(1, 97, (n,), generator=g).tolist() for n in (4, 2, 5)]
    return prompts, responses


def _alone(model, seq):
    """Batch 1, no padding, no cache: hidden states [T, H] and logits [T, V] of one sequence."""
    out = model(input_ids=torch.tensor([seq]), output_hidden_states=True)
    return out.hidden_states[-1][0], out.logits[0]


def test_layout_rows_puts_the_response_after_the_prompt_block():
    from r2bench.lm.policy import layout_rows

    prompts, responses = _rows()
    b = layout_rows(prompts, responses, 0, "cpu")
    assert b.prefix_len == 17 and b.prompt_width == 17 + 6 and b.response_width == 5
    for i, (p, r) in enumerate(zip(prompts, responses)):
        assert b.input_ids[i, :b.prompt_width][b.attention_mask[i, :b.prompt_width].bool()].tolist() == p
        assert b.response_ids[i, :len(r)].tolist() == r and int(b.response_mask[i].sum()) == len(r)
    flat = layout_rows(prompts, responses, 0, "cpu", shared_prefix=False)
    assert flat.prefix_len == 0 and torch.equal(flat.response_mask, b.response_mask)


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_forward_outputs_equal_each_row_run_alone(shared_prefix):
    """Response log-probs, decision states, head scores and answer-word logits of one forward pass
    against a plain full forward of each row, values and gradients."""
    from r2bench.lm.policy import Policy, layout_rows, response_nll

    model = _tiny_llama()
    head = torch.nn.Sequential(torch.nn.Linear(32, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    policy = Policy(model, head)
    prompts, responses = _rows()
    b = layout_rows(prompts, responses, 0, "cpu")
    # decisions: the second response token of row 0, the last prompt token of row 2
    b.decision_row, b.decision_col = torch.tensor([0, 2]), torch.tensor([b.prompt_width + 1, b.prompt_width - 1])
    b.logit_row, b.logit_col, b.vocab_ids = torch.tensor([1]), torch.tensor([b.prompt_width - 1]), torch.tensor([5, 7])
    out = policy(b, shared_prefix=shared_prefix)
    nll, n = response_nll(out, b)
    loss = nll + out.scores.sum() + out.vocab_logits.sum()
    loss.backward()
    grads = {k: p.grad.clone() for k, p in policy.named_parameters()}
    policy.zero_grad()

    ref_lp, ref_loss = [], 0.0
    hid = {}
    for i, (p, r) in enumerate(zip(prompts, responses)):
        h, logits = _alone(model, p + r)
        lp = torch.log_softmax(logits.float(), -1)[len(p) - 1:len(p) + len(r) - 1].gather(-1, torch.tensor(r)[:, None])[:, 0]
        ref_lp.append(lp)
        ref_loss = ref_loss - lp.sum()
        hid[i] = (h, logits, len(p))
    h0 = hid[0][0][hid[0][2] + 1]
    h2 = hid[2][0][hid[2][2] - 1]
    scores = head(torch.stack([h0, h2])).squeeze(-1)
    words = hid[1][1][hid[1][2] - 1][[5, 7]]
    (ref_loss + scores.sum() + words.sum()).backward()

    for i, lp in enumerate(ref_lp):
        assert torch.allclose(out.logprobs[i, :len(lp)], lp, atol=1e-5)
        assert float(out.logprobs.detach()[i, len(lp):].abs().sum()) == 0.0  # masked
    assert n == sum(len(r) for r in responses)
    assert torch.allclose(out.hidden, torch.stack([h0, h2]), atol=1e-5)
    assert torch.allclose(out.scores.reshape(-1), scores, atol=1e-5)
    assert torch.allclose(out.vocab_logits[0], words, atol=1e-5)
    for k, p in policy.named_parameters():
        assert float((grads[k] - p.grad).norm()) <= 1e-4 * float(p.grad.norm()) + 1e-6, k
    assert any(g.abs().sum() > 0 for k, g in grads.items() if k.startswith("head."))


def test_head_grad_to_lm_false_keeps_the_head_out_of_the_lm_gradient():
    from r2bench.lm.policy import Policy, layout_rows

    prompts, responses = _rows()
    model = _tiny_llama()
    policy = Policy(model, torch.nn.Linear(32, 1))
    b = layout_rows(prompts, responses, 0, "cpu")
    b.decision_row, b.decision_col = torch.tensor([0]), torch.tensor([b.prompt_width])
    out = policy(b, logprobs=False, head_grad_to_lm=False)
    assert out.logprobs is None
    out.scores.sum().backward()
    assert all(p.grad is None for p in model.parameters())
    assert policy.head.weight.grad is not None and float(policy.head.weight.grad.abs().sum()) > 0


def test_states_run_the_head_alone_and_bad_calls_are_refused():
    from r2bench.lm.policy import Policy

    policy = Policy(_tiny_llama(), torch.nn.Linear(32, 1))
    states = torch.randn(4, 32)
    out = policy(states=states)
    assert torch.allclose(out.scores, policy.head(states).float())
    assert out.logprobs is None
    with pytest.raises(ValueError, match="states="):
        Policy(_tiny_llama())(states=states)
    with pytest.raises(ValueError, match="PolicyBatch"):
        policy()


def test_last_position_batch_reads_the_last_prompt_token():
    """Answer-word logits and hidden states at each prompt's last token (TALLRec, Prompt4NR, R2ec items)."""
    from r2bench.lm.policy import Policy, last_position_batch

    model = _tiny_llama(2)
    prompts, _ = _rows(3)
    b = last_position_batch(prompts, 0, "cpu", vocab_ids=[11, 13])
    assert b.response_mask is None and b.prefix_len == 17
    with torch.no_grad():
        out = Policy(model)(b)
        for i, p in enumerate(prompts):
            h, logits = _alone(model, p)
            assert torch.allclose(out.hidden[i], h[-1], atol=1e-5)
            assert torch.allclose(out.vocab_logits[i], logits[-1, [11, 13]], atol=1e-5)
    assert out.logprobs is None and out.scores is None  # no response block, no head
