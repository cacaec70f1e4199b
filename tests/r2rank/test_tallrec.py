"""TALLRec on the R2Rank machinery: LoRA Yes/No tuning learns the planted signal."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from tests.r2rank.test_training import make_tiny_lm, planted_benchmark, prompt_texts  # noqa: E402


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    from r2bench.data.benchmark import load_benchmark

    return load_benchmark(planted_benchmark(tmp_path_factory.mktemp("planted_tallrec")))


def _method(planted, tmp_path, **kw):
    from baselines.tallrec import TALLRecConfig, TALLRecMethod

    model, tok = make_tiny_lm(prompt_texts(planted) + ["Yes No"] * 5)
    for p in model.parameters():
        p.requires_grad_(False)
    cfg = TALLRecConfig(**{"lora_r": 8, "lora_alpha": 16, "max_instances": 48, "negatives_per_positive": 2,
                           "epochs": 4, "batch_size": 8, "lr": 3e-3, "save_to": str(tmp_path / "tallrec"), **kw})
    m = TALLRecMethod(cfg, seed=0)
    m.set_model(model, tok)
    return m


def test_tallrec_learns_yes_no(planted, tmp_path):
    """The Yes/No objective learns the planted signal. On a *random* tiny backbone LoRA barely moves
    (there is no pretrained computation to adapt), so this runs the method's full fine-tuning
    setting (lora_r=0); the LoRA path is checked below."""
    from r2bench.eval.metrics import per_instance_metrics
    from r2bench.methods import method_class

    assert method_class("tallrec").__name__ == "TALLRecMethod"
    m = _method(planted, tmp_path, lora_r=0)
    test = planted.split("test").head(30)
    target = test["target_index"].to_numpy()
    before = per_instance_metrics(m.score(planted, test), target, ["ndcg@10"])["ndcg@10"].mean()
    m.fit(planted)
    scores = m.score(planted, test)
    after = per_instance_metrics(scores, target, ["ndcg@10"])["ndcg@10"].mean()
    assert scores.shape == (30, planted.k) and np.isfinite(scores).all()
    assert after >= before + 0.15, (before, after)
    info = m.info()
    assert info["train_examples"] == 48 * 3 and info["fit_loss_last"] < info["fit_loss_first"]


def test_tallrec_lora_trains_only_the_adapter_and_reloads(planted, tmp_path):
    from baselines.tallrec import TALLRecConfig, TALLRecMethod

    m = _method(planted, tmp_path, max_instances=8, epochs=1)
    m.model.save_pretrained(tmp_path / "base")
    m.tokenizer.save_pretrained(tmp_path / "base")
    before = {n: p.detach().clone() for n, p in m.model.named_parameters()}
    m.fit(planted)
    trainable = [n for n, p in m.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    base_after = {n.replace("base_model.model.", "").replace(".base_layer", ""): p
                  for n, p in m.model.named_parameters() if "lora_" not in n}
    assert all(torch.equal(before[n], p) for n, p in base_after.items() if n in before)
    assert (tmp_path / "tallrec" / "adapter_model.safetensors").is_file()
    test = planted.split("test").head(2)
    scores = m.score(planted, test)
    # the saved adapter on the saved base model gives the same scores without fitting
    again = TALLRecMethod(TALLRecConfig(backbone=str(tmp_path / "base"), checkpoint=str(tmp_path / "tallrec"),
                                        device="cpu", dtype="float32"), seed=0)
    again.fit(planted)
    assert again.info()["fitted"] is False
    assert np.allclose(again.score(planted, test), scores, atol=1e-4)


def test_tallrec_scores_are_permutation_invariant(planted, tmp_path):
    m = _method(planted, tmp_path)
    inst = planted.split("test").head(2)
    base = m.score(planted, inst)
    rev = inst.with_columns(inst["candidates"].list.reverse())
    flipped = m.score(planted, rev)
    assert np.allclose(base[:, ::-1], flipped, atol=1e-5)
