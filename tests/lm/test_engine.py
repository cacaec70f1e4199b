"""The engine's sharding (equal passes on every process) and its one-process behaviour."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")


def test_shard_batch_pads_every_process_to_the_largest_share():
    from r2bench.lm.engine import shard_batch, user_shard

    users = [f"u{i}" for i in range(7)]
    shards = [shard_batch(users, r, 3) for r in range(3)]
    owners = [user_shard(u, 3) for u in users]
    most = max(owners.count(r) for r in range(3))
    assert all(len(s.items) == most for s in shards)  # the same number of passes everywhere
    for r, s in enumerate(shards):
        assert s.own == [i for i, o in enumerate(owners) if o == r]  # own items, in batch order
        assert s.weights == [1.0] * s.n_own + [0.0] * (most - s.n_own)
        assert all(i == (s.own[0] if s.own else 0) for i in s.items[s.n_own:])  # repeats of one item
        assert s.n_global == 7
    assert sorted(i for s in shards for i in s.own) == list(range(7))  # every item trained exactly once
    assert len({len(s.own) for s in shards}) > 1  # this batch is uneven, so padding happened


def test_a_process_without_items_repeats_the_first_one_with_weight_zero():
    from r2bench.lm.engine import shard_batch, user_shard

    users = [u for u in (f"v{i}" for i in range(40)) if user_shard(u, 2) == 0][:3]
    empty = shard_batch(users, 1, 2)
    assert empty.items == [0, 0, 0] and empty.weights == [0.0, 0.0, 0.0] and empty.own == []
    one = shard_batch(users, 0, 1)
    assert one.items == [0, 1, 2] and one.weights == [1.0] * 3
    assert shard_batch([], 0, 2).items == []


def test_one_process_engine_steps_like_plain_torch():
    """Unlaunched: no wrapper, scalar sums are the values, micro-steps accumulate, step clips and zeroes."""
    from r2bench.lm.engine import Engine

    eng = Engine()
    assert eng.world_size == 1 and eng.rank == 0 and eng.is_main and eng.kind == "NO" and not eng.shards_state
    assert eng.sum([1.5, 2.0]) == [1.5, 2.0]
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)
    b.load_state_dict(a.state_dict())
    model, opt = eng.prepare(a, torch.optim.SGD(a.parameters(), lr=0.1), max_grad_norm=0.5)
    assert eng.unwrap(model) is a
    x = torch.randn(4, 3)
    for i in range(2):
        with eng.micro_step(model, last=i == 1):
            eng.backward(model(x[2 * i: 2 * i + 2]).sum())
    eng.step(model, opt, 0.5)
    ref = torch.optim.SGD(b.parameters(), lr=0.1)
    b(x).sum().backward()
    torch.nn.utils.clip_grad_norm_(b.parameters(), 0.5)
    ref.step()
    assert all(torch.allclose(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert all(p.grad is None for p in a.parameters())  # zeroed (set to None) by step


def test_checkpointer_round_trip_on_one_process(tmp_path):
    """Policy, head and optimizer state written by the main process and read back (weights_only)."""
    pytest.importorskip("transformers")
    from transformers import LlamaConfig, LlamaForCausalLM

    from r2bench.lm.checkpoints import Checkpointer
    from r2bench.lm.engine import Engine
    from r2bench.lm.policy import Policy
    from r2bench.r2rank.head import ScoringHead

    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1))

    class Tok:
        def save_pretrained(self, folder):
            (folder / "tokenizer.txt").write_text("tiny")

    eng = Engine()
    policy = Policy(lm, ScoringHead(16, 8))
    model, opt = eng.prepare(policy, torch.optim.AdamW(policy.parameters(), lr=1e-2))
    policy.head(torch.randn(3, 16)).sum().backward()
    eng.step(model, opt)
    ck = Checkpointer(tmp_path, keep=1)
    ck.save(1, eng, model, Tok(), opt, {"note": "x"})
    d = ck.save(2, eng, model, Tok(), opt, {"note": "y"})
    assert ck.latest() == d and not (tmp_path / "checkpoints" / "step-000001").exists()  # keep=1
    assert (d / "policy" / "model.safetensors").is_file() and (d / "head.safetensors").is_file()
    assert Checkpointer.load_state(d) == {"step": 2, "note": "y"}
    fresh = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    Checkpointer.load_optimizer(d, fresh, eng)
    st = fresh.state_dict()["state"]
    assert st and all(torch.equal(st[k]["exp_avg"], opt.state_dict()["state"][k]["exp_avg"]) for k in st)
    assert torch.equal(ScoringHead.load(d).net[1].weight, policy.head.net[1].weight)
