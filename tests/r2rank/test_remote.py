"""generator=openai without a server: completions -> reasonings -> the same decision as generator=hf."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from r2bench.llm.usage import CallResult  # noqa: E402
from r2bench.lm import generation as G  # noqa: E402
from r2bench.r2rank import decision as D  # noqa: E402
from r2bench.r2rank import inference as I  # noqa: E402
from r2bench.lm import prompts as P  # noqa: E402
from r2bench.r2rank.head import ScoringHead  # noqa: E402
from r2bench.r2rank.remote import prompt_text, reasoning_of, retokenize, server_ids  # noqa: E402

from .conftest import _build_model, fixture_row  # noqa: E402


def _instance(tok, items, k=0):
    row = fixture_row(n_candidates=5, history_len=4 + k, instance_id=k, offset=5 * k)
    ip = P.instance_prompt(row, items, ["age", "occupation"])
    return ip.all_messages(), G.encode_prompts(tok, ip.all_messages())


def _setup(tok, items):
    """A seeded tiny model, a small head, three instances (messages, prompt ids) and their ids."""
    model = _build_model(len(tok), seed=3)
    torch.manual_seed(5)
    head = ScoringHead(model.config.hidden_size, inner_size=16).eval()
    insts = [_instance(tok, items, k) for k in range(3)]
    return model, head, insts, [x[1] for x in insts]


TEXTS = [  # what a server might return (the stop string dropped): finished, unfinished, no decision
    "#Initial reasoning: the user likes Drama and Heat (1995) is Action. <answer>Not Recommend",
    "#Initial reasoning: Fargo (1996) matches the Crime films in the history. #Self-check",
    "Comedy fits the history <answer>Recommend",
    "no decision here",
    "",
]


def test_same_reasoning_text_gives_the_hf_score(tiny_tokenizer, items):
    """The openai path (text re-tokenized, several instances, shared prefix, one prefill) gives the score an
    independent hf recomputation gives for the same text: the full prompt + the text's tokens + ``<answer>``."""
    tok = tiny_tokenizer
    model, head, insts, ids = _setup(tok, items)
    remote = []
    for k, (msgs, pids) in enumerate(insts):
        rs = []
        for j, (m, p) in enumerate(zip(msgs, pids)):
            text = TEXTS[(j + k) % len(TEXTS)]
            res = CallResult(key="k", ok=True, answer=text, finish_reason="stop" if "<answer>" in text else "length")
            r = reasoning_of(tok, prompt_text(tok, m), p, res)
            assert tok.decode(r.token_ids) == r.text  # the text round trip is exact
            rs.append(r)
        remote.append(rs)
    got = I.decide_instances(model, tok, ids, remote, head=head, instances_per_batch=2)
    for pids, rs, (_, _, margin, score) in zip(ids, remote, got):
        for p, r, m, s in zip(pids, rs, margin, score):  # one row alone, no prefix cache, no batch
            body = tok(r.text.split("<answer>")[0], add_special_tokens=False)["input_ids"] if "<answer>" in r.text \
                else tok(r.text, add_special_tokens=False)["input_ids"]
            row = list(p) + body + tok("<answer>", add_special_tokens=False)["input_ids"]
            _, m_ref, s_ref = D.score_decisions(model, tok, [row], head=head)
            assert float(s) == pytest.approx(float(s_ref), abs=1e-4) and float(m) == pytest.approx(float(m_ref), abs=1e-4)
    assert sum(r.finished for rs in remote for r in rs) == 6  # the two texts with an unclosed tag, 3 times each
    assert len({round(float(s), 4) for *_, sc in got for s in sc}) > 5  # scores vary: not vacuous


def test_server_token_ids_give_the_hf_generation_scores(tiny_tokenizer, items):
    """With the generated ids returned by the server (vLLM's return_tokens_as_token_ids), the openai path
    reproduces generator=hf exactly, whatever the tokenizer would make of the text."""
    tok = tiny_tokenizer
    model, head, insts, ids = _setup(tok, items)
    hf = I.reason_and_decide_instances(model, tok, ids, head=head, max_new_tokens=12)
    remote = []
    for (msgs, pids), (reasonings, *_) in zip(insts, hf):
        rs = []
        for m, p, r in zip(msgs, pids, reasonings):
            res = CallResult(key="k", ok=True, answer=r.text.replace(P.ANSWER_CLOSE, ""),
                             finish_reason="stop" if r.finished else "length",
                             stop_reason=P.ANSWER_CLOSE if r.finished else None,
                             logprobs=[{"token": f"token_id:{t}", "logprob": 0.0, "top": []} for t in r.token_ids])
            got = reasoning_of(tok, prompt_text(tok, m), p, res)
            assert got.token_ids == r.token_ids and got.finished == r.finished
            rs.append(got)
        remote.append(rs)
    again = I.decide_instances(model, tok, ids, remote, head=head, instances_per_batch=3)
    for (_, _, m1, s1), (_, _, m2, s2) in zip(hf, again):
        assert torch.allclose(s1, s2, atol=1e-4) and torch.allclose(m1, m2, atol=1e-4)
    # this random model's tokens are not the tokenizer's segmentation of its text: the ids path matters
    assert any(tok(r.text, add_special_tokens=False)["input_ids"] != r.token_ids for r in hf[0][0])


def test_server_token_ids_are_used_as_given(tiny_tokenizer):
    tok = tiny_tokenizer
    ids = tok("good fit <answer>Recommend", add_special_tokens=False)["input_ids"]
    res = CallResult(key="k", ok=True, answer="ignored text", finish_reason="stop", stop_reason=P.ANSWER_CLOSE,
                     logprobs=[{"token": f"token_id:{i}", "logprob": -1.0, "top": []} for i in ids])
    assert server_ids(res) == ids
    r = reasoning_of(tok, "", [], res)
    close = tok(P.ANSWER_CLOSE, add_special_tokens=False)["input_ids"]
    assert r.finished and r.token_ids == ids + close and r.text.endswith(P.ANSWER_CLOSE)
    # text pieces (llama.cpp's logprobs) are not ids: the text is re-tokenized instead
    res2 = CallResult(key="k", ok=True, answer="good fit", finish_reason="length",
                      logprobs=[{"token": "good", "logprob": -1.0, "top": []}])
    assert server_ids(res2) is None
    r2 = reasoning_of(tok, "", [], res2)
    assert not r2.finished and r2.token_ids == tok("good fit", add_special_tokens=False)["input_ids"]


def test_finished_only_when_stopped_on_the_closing_tag(tiny_tokenizer):
    tok = tiny_tokenizer
    cases = [  # (text, finish_reason, stop_reason) -> finished
        ("x <answer>Recommend", "stop", None, True),  # server without stop_reason: an unclosed tag + stop
        ("x <answer>Recommend", "stop", 3, False),  # vLLM says: stopped on a token (EOS), not the tag
        ("x <answer>Recommend", "length", None, False),
        ("no tag at all", "stop", None, False),  # EOS without a decision
        ("x <answer>Not Recommend</answer>", "stop", None, True),  # a server that keeps the stop string
    ]
    for text, fin, stop, want in cases:
        r = reasoning_of(tok, "", [], CallResult(key="k", ok=True, answer=text, finish_reason=fin, stop_reason=stop))
        assert r.finished == want, text
        assert (r.decision is not None) == want


def test_retokenize_in_context(tiny_tokenizer):
    tok = tiny_tokenizer
    prompt = "<|im_start|>assistant\n"
    pids = tok(prompt, add_special_tokens=False)["input_ids"]
    text = "Heat (1995) fits"
    assert tok.decode(retokenize(tok, prompt, pids, text)) == text
    assert retokenize(tok, prompt, pids, "") == []


def test_openai_rollouts_of_a_full_finetune_are_refused(tiny_model_dir, tiny_benchmark):
    pytest.importorskip("openai")
    from r2bench.errors import R2BenchError
    from r2bench.r2rank.rl import RLTrainer, fresh_head
    from r2bench.r2rank.train_config import RLConfig
    from r2bench.lm.backbones import load_policy

    cfg = RLConfig(backbone=str(tiny_model_dir), variant="rl-only", generator="openai")
    model, tok = load_policy(cfg.backbone, cfg, device="cpu", dtype="float32")
    with pytest.raises(R2BenchError, match="needs a LoRA policy"):
        RLTrainer(cfg, model, tok, fresh_head(model.config.hidden_size, 8), tiny_benchmark, seed=0)


def test_served_reasonings_are_cached_per_weights_not_per_served_name(tiny_model_dir, tmp_path):
    """serve-local serves every folder as "smollm2": another model's cached reasonings must not answer."""
    pytest.importorskip("openai")
    import shutil

    from safetensors.torch import load_file, save_file

    from r2bench.r2rank.method import R2RankConfig, R2RankMethod

    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    weights = next(other.glob("*.safetensors"))
    state = load_file(str(weights))
    save_file({k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}, str(weights),
              metadata={"format": "pt"})

    def client_of(folder):
        m = R2RankMethod(R2RankConfig(backbone=str(folder), generator="openai", base_url="http://127.0.0.1:9/v1",
                                      model="smollm2", head="none", device="cpu", dtype="float32"))
        m.load()
        return m._client()

    a, b, a2 = client_of(tiny_model_dir), client_of(other), client_of(tiny_model_dir)
    req = a.completion_request([1, 2, 3], max_tokens=4)
    assert req == b.completion_request([1, 2, 3], max_tokens=4)  # the same request goes to the server
    assert a.cache_key(req) != b.cache_key(req)  # but the answers are kept apart
    assert a.cache_key(req) == a2.cache_key(req)  # and found again for the same weights
    assert "cache_scope" not in req
