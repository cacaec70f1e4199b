"""Prompt4NR on a tiny random Llama: templates, the 2-logit loss, learning, reloading, resuming."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from tests.baselines.tiny import tiny_lm  # noqa: E402
from tests.r2rank.test_training import planted_benchmark  # noqa: E402


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    from r2bench.data.benchmark import load_benchmark

    return load_benchmark(planted_benchmark(tmp_path_factory.mktemp("planted_p4")))


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, planted):
    """The tiny model saved as a folder (for the runs that load a backbone by path)."""
    model, tok = tiny_lm(planted)
    d = tmp_path_factory.mktemp("p4_base")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def _method(planted, tmp_path, **kw):
    from baselines.prompt4nr import Prompt4NRConfig, Prompt4NRMethod

    model, tok = tiny_lm(planted)
    cfg = Prompt4NRConfig(**{"lora_r": 0, "item_text": "fields", "max_instances": 48, "epochs": 3, "lr": 3e-3,
                             "val_instances": 10, "save_to": str(tmp_path / "p4"), **kw})
    m = Prompt4NRMethod(cfg, seed=0)
    m.set_model(model, tok)
    return m


def _ndcg(scores, inst):
    from r2bench.eval.metrics import per_instance_metrics

    return per_instance_metrics(scores, inst["target_index"].to_numpy(), ["ndcg@10"])["ndcg@10"].mean()


def test_prompt4nr_is_registered_in_the_llm_group():
    from r2bench.methods import METHODS, method_class
    from r2bench.report.tables import group_of

    assert "prompt4nr" in [e.name for e in METHODS.entries()]
    assert method_class("prompt4nr").__name__ == "Prompt4NRMethod"
    assert group_of("prompt4nr") == "LLM-based"


@pytest.mark.parametrize("form", ["discrete", "continuous", "hybrid"])
@pytest.mark.parametrize("family", ["relevance", "emotion", "action", "utility"])
def test_templates_put_the_user_first_and_end_before_the_answer(planted, family, form):
    from baselines.prompt4nr_templates import ANSWERS, encode_instance, history_titles, make_template

    _, tok = tiny_lm(planted)
    t = make_template(family, form, "movie")
    tok.add_tokens(t.new_tokens())
    row = planted.split("test").to_dicts()[0]
    users = history_titles(row, planted.item_titles, 50, 10)
    assert users == [planted.item_titles[i] for i in reversed(row["history"])]  # most recent first
    enc = encode_instance(tok, t, users, ["Film 7", "Film 9"])
    prefix = tok.decode(enc.prefix)
    assert all(u in prefix for u in users) and "Film 7" not in prefix  # the user part is the shared prefix
    cues = [tok.decode(r) for r in enc.rows]
    assert "Film 7" in cues[0] and "Film 9" in cues[1]
    assert not cues[0].endswith(" ") and ANSWERS[family][1] not in cues[0]  # the answer word comes next
    if form != "discrete":
        assert prefix.startswith("[P1][P2][P3]") and "[Q1][Q2][Q3]" in cues[0]
    assert ("[M1][M2][M3]" in cues[0]) == (form == "continuous")


def test_answer_words_must_be_single_tokens(planted):
    from baselines.prompt4nr_templates import answer_token_ids, make_template
    from r2bench.errors import R2BenchError

    _, tok = tiny_lm(planted)
    neg, pos = answer_token_ids(tok, make_template("relevance", "discrete", "movie"))
    assert tok.decode([neg]) == " unrelated" and tok.decode([pos]) == " related"
    with pytest.raises(R2BenchError, match=r"'xylophonic' is \d+ tokens.*single token.*answer_words"):
        answer_token_ids(tok, make_template("relevance", "discrete", "movie", answer_words="xylophonic,related"))
    with pytest.raises(R2BenchError, match="two words"):
        make_template("relevance", "discrete", "movie", answer_words="related")


def test_loss_touches_only_the_two_answer_logits(planted, tmp_path):
    """Through the policy module's forward, the training loss's gradient w.r.t. the vocabulary logits at the
    answer position is exactly zero outside the two answer columns."""
    from baselines.prompt4nr import answer_logits, answer_loss
    from baselines.prompt4nr_templates import answer_token_ids

    m = _method(planted, tmp_path, form="continuous")
    m.template = m._template(planted)
    m._prepare_training_model()
    neg, pos = answer_token_ids(m.tokenizer, m.template)
    g = m._groups(planted)[0]
    seen = []

    def keep(module, inputs, output):  # the full-vocabulary logits the policy slices its answer logits from
        output.retain_grad()
        seen.append(output)

    hook = m.model.get_output_embeddings().register_forward_hook(keep)
    two = answer_logits(m.policy, g.prefix, g.rows, m.tokenizer.pad_token_id, neg, pos)
    hook.remove()
    answer_loss(two, torch.tensor(g.labels)).backward()
    (logits,) = seen
    grad = logits.grad
    others = torch.ones(grad.shape[1], dtype=torch.bool)
    others[[neg, pos]] = False
    assert grad.shape == (len(g.rows), len(m.tokenizer)) and g.labels == [1, 0, 0, 0, 0]
    assert torch.count_nonzero(grad[:, others]) == 0
    assert (grad[:, [neg, pos]].abs() > 0).all()
    # the positive row pushes l_pos up and l_neg down, a negative row the other way
    assert grad[0, pos] < 0 < grad[0, neg] and grad[1, pos] > 0 > grad[1, neg]


def test_prompt4nr_learns_the_planted_signal(planted, tmp_path):
    """Full fine-tuning (lora_r=0, as released) on a tiny random model learns the Gold genre; the best epoch is
    the one with the best val NDCG@10."""
    m = _method(planted, tmp_path)
    test = planted.split("test").head(30)
    m.template = m._template(planted)
    m._prepare_training_model()  # the untrained model, with its new token rows
    before = _ndcg(m.score(planted, test), test)
    m.fit(planted)
    after = _ndcg(m.score(planted, test), test)
    info = m.info()
    assert after >= before + 0.2, (before, after)
    assert info["train_examples"] == 48 * 5 and info["history"][-1]["loss"] < info["history"][0]["loss"]
    vals = [h["val_ndcg10"] for h in info["history"]]
    assert info["best_epoch"] == int(np.argmax(vals)) + 1 and info["val_ndcg10_best"] == max(vals)


def test_continuous_form_trains_lora_and_new_rows_only_and_reloads(planted, tmp_path, base_dir):
    from baselines.prompt4nr import Prompt4NRConfig, Prompt4NRMethod

    m = _method(planted, tmp_path, backbone=str(base_dir), form="continuous", lora_r=8, max_instances=8, epochs=1,
                val_instances=4)
    m.fit(planted)
    trainable = {n: p for n, p in m.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "trainable_tokens" in n for n in trainable)
    rows = next(p for n, p in trainable.items() if "trainable_tokens_delta" in n)
    assert rows.shape[0] == 1 + 3 + 3 + 3  # [NSEP], [P1-3], [Q1-3], [M1-3]
    test = planted.split("test").head(3)
    scores = m.score(planted, test)
    again = Prompt4NRMethod(Prompt4NRConfig(backbone=str(base_dir), adapter=str(tmp_path / "p4" / "final"),
                                            device="cpu", dtype="float32"), seed=0)
    again.fit(planted)
    assert again.info()["fitted"] is False and again.template.form == "continuous"
    assert np.allclose(again.score(planted, test), scores, atol=1e-4)


def test_scores_do_not_depend_on_candidate_order(planted, tmp_path):
    m = _method(planted, tmp_path, max_instances=8, epochs=1, val_instances=2)
    m.fit(planted)
    inst = planted.split("test").head(3)
    base = m.score(planted, inst)
    flipped = m.score(planted, inst.with_columns(inst["candidates"].list.reverse()))
    assert np.allclose(base[:, ::-1], flipped, atol=1e-5)


def test_resumed_fit_equals_an_uninterrupted_one(planted, tmp_path):
    """Stopped after epoch 1 and run again with epochs=2, the fit resumes from its checkpoint and ends where
    an uninterrupted 2-epoch fit ends."""
    kw = {"max_instances": 12, "val_instances": 3, "select_epoch": False}
    full = _method(planted, tmp_path / "a", epochs=2, **kw)
    full.fit(planted)
    first = _method(planted, tmp_path / "b", epochs=1, **kw)
    first.fit(planted)
    resumed = _method(planted, tmp_path / "b", epochs=2, **kw)
    resumed.fit(planted)
    assert [h["epoch"] for h in resumed.info()["history"]] == [1, 2]
    inst = planted.split("test").head(3)
    assert np.allclose(resumed.score(planted, inst), full.score(planted, inst), atol=1e-5)
