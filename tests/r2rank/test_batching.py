"""Several instances per batch: the same tokens and scores as one instance at a time."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from r2bench.lm import generation as G  # noqa: E402
from r2bench.lm import kvcache as KV  # noqa: E402
from r2bench.r2rank import inference as I  # noqa: E402
from r2bench.lm import prompts as P  # noqa: E402
from r2bench.r2rank.head import ScoringHead  # noqa: E402

from .conftest import _build_model, fixture_row  # noqa: E402

MAX_NEW = 8


def _instances(tok, items):
    """Four instances whose shared prefixes differ in length (histories of 2 to 9 items), 3-5 candidates."""
    out = []
    for k, (hist, cands) in enumerate([(2, 4), (9, 3), (5, 5), (3, 4)]):
        row = fixture_row(n_candidates=cands, history_len=hist, instance_id=k, offset=4 * k)
        out.append(G.encode_prompts(tok, P.instance_prompt(row, items, ["age", "occupation"]).all_messages()))
    return out


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_instances_per_batch_gives_the_same_tokens_and_scores(tiny_tokenizer, items, attn):
    tok = tiny_tokenizer
    model = _build_model(len(tok))
    model.set_attn_implementation(attn)
    torch.manual_seed(2)
    head = ScoringHead(model.config.hidden_size, inner_size=16).eval()
    inst = _instances(tok, items)
    plens = [KV.common_prefix_len(x) for x in inst]
    assert len(set(plens)) == len(plens)  # the test needs prefixes of different lengths
    one = I.score_instances(model, tok, inst, head=head, max_new_tokens=MAX_NEW, instances_per_batch=1)
    four = I.score_instances(model, tok, inst, head=head, max_new_tokens=MAX_NEW, instances_per_batch=4)
    # batches of 2 instances, each instance split in chunks of 2 prompts: the general layout
    mixed = I.score_instances(model, tok, inst, head=head, max_new_tokens=MAX_NEW, instances_per_batch=2,
                              batch_size=2)
    for a, b, c in zip(one, four, mixed):
        assert [r.reasoning.token_ids for r in a] == [r.reasoning.token_ids for r in b] == \
            [r.reasoning.token_ids for r in c]
        assert [r.score for r in b] == pytest.approx([r.score for r in a], abs=1e-4)
        assert [r.margin for r in b] == pytest.approx([r.margin for r in a], abs=1e-4)
        assert [r.score for r in c] == pytest.approx([r.score for r in a], abs=1e-4)
    # not vacuous: reasonings and scores vary
    flat = [r for a in one for r in a]
    assert len({tuple(r.reasoning.token_ids) for r in flat}) > 2 and len({round(r.score, 4) for r in flat}) > 2
    # one instance alone (the single-instance API) is what instances_per_batch=1 gives
    alone = I.score_prompts(model, tok, inst[1], head=head, max_new_tokens=MAX_NEW)
    assert [r.score for r in alone] == [r.score for r in one[1]]


def test_sampling_per_batch_is_seeded_and_generation_matches(tiny_model, tiny_tokenizer, items):
    inst = _instances(tiny_tokenizer, items)

    def run(seed, ipb):
        g = torch.Generator().manual_seed(seed)
        return G.generate_instances(tiny_model, tiny_tokenizer, inst, max_new_tokens=5, do_sample=True,
                                    temperature=1.5, top_p=1.0, generator=g, instances_per_batch=ipb)

    a = run(3, 4)
    assert [[r.token_ids for r in x] for x in a] == [[r.token_ids for r in x] for x in run(3, 4)]
    assert [[r.token_ids for r in x] for x in a] != [[r.token_ids for r in x] for x in run(4, 4)]
    greedy = G.generate_instances(tiny_model, tiny_tokenizer, inst, max_new_tokens=5, do_sample=False,
                                  temperature=1.0, top_p=1.0, generator=None, instances_per_batch=3)
    ref = [G.generate_reasonings(tiny_model, tiny_tokenizer, x, max_new_tokens=5) for x in inst]
    assert [[r.token_ids for r in x] for x in greedy] == [[r.token_ids for r in x] for x in ref]


def test_decide_instances_equals_deciding_on_the_generation_cache(tiny_model, tiny_tokenizer, items):
    """Given the reasonings, one prefill (what generator=openai does) gives the scores of the generation path."""
    tok = tiny_tokenizer
    torch.manual_seed(4)
    head = ScoringHead(tiny_model.config.hidden_size, inner_size=16).eval()
    inst = _instances(tok, items)
    gen = I.reason_and_decide_instances(tiny_model, tok, inst, head=head, max_new_tokens=MAX_NEW)
    again = I.decide_instances(tiny_model, tok, inst, [g[0] for g in gen], head=head, instances_per_batch=3)
    for (_, h1, m1, s1), (_, h2, m2, s2) in zip(gen, again):
        assert torch.allclose(s1, s2, atol=1e-4) and torch.allclose(m1, m2, atol=1e-4)
        assert torch.allclose(h1, h2, atol=1e-4)


def test_progress_counts_candidates(tiny_model, tiny_tokenizer, items):
    inst = _instances(tiny_tokenizer, items)
    seen: list[float] = []
    I.reason_and_decide_instances(tiny_model, tiny_tokenizer, inst, max_new_tokens=4, instances_per_batch=2,
                                  progress=seen.append)
    assert sum(seen) == pytest.approx(sum(len(x) for x in inst))
    assert len(seen) > len(inst)  # it moves within a batch, not once per instance
