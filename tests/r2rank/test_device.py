"""Device and dtype handling of R2Rank and TALLRec: CUDA (``gpu`` marker) and bfloat16 on the CPU.

Every test runs on two targets with the same code:

- ``cpu-bf16``: the CPU in bfloat16 (always run): the dtype paths that CUDA's
  ``dtype=auto`` takes (bf16 weights and hidden states, float heads and losses);
- ``cuda``: a tiny random Llama on the GPU with ``dtype=auto`` (bfloat16), marked
  ``gpu``: skipped with the reason where CUDA is missing (``tests/conftest.py``).

The inference equality check additionally runs in float32 on the target's device,
where shared-prefix and plain forwards must agree to 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from baselines.tallrec import TALLRecConfig  # noqa: E402
from r2bench.r2rank.train_config import RLConfig, SFTConfig  # noqa: E402

from .test_training import make_tiny_lm, planted_benchmark, prompt_texts  # noqa: E402

TARGETS = [
    pytest.param(("cpu", "bfloat16"), id="cpu-bf16"),
    pytest.param(("cuda", "auto"), id="cuda", marks=pytest.mark.gpu),
]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    from r2bench.data.benchmark import load_benchmark

    return load_benchmark(planted_benchmark(tmp_path_factory.mktemp("planted_dev"), n_users=60))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, planted):
    model, tok = make_tiny_lm(prompt_texts(planted) + ["Yes No"] * 5)
    d = tmp_path_factory.mktemp("tiny_dev")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def _expected_dtype(device: str, dtype: str):
    from r2bench.lm.backbones import choose_dtype

    return choose_dtype(dtype, device)


@pytest.mark.parametrize("target", TARGETS)
def test_inference_shared_prefix_equals_plain_forward(target, tiny_dir, planted):
    from r2bench.lm import generation as G
    from r2bench.lm import kvcache as KV
    from r2bench.r2rank import decision as D
    from r2bench.r2rank import inference as I
    from r2bench.lm.backbones import load_backbone
    from r2bench.r2rank.head import ScoringHead
    from r2bench.lm.prompts import instance_prompt

    device, dtype = target
    rows = planted.split("test").head(2).to_dicts()
    for dt, tol in (("float32", 1e-4), (dtype, None)):
        model, tok = load_backbone(str(tiny_dir), device=device, dtype=dt)
        assert model.dtype == _expected_dtype(device, dt) and KV.model_device(model).type == device
        head = ScoringHead(model.config.hidden_size, 16).to(KV.model_device(model)).eval()
        insts = [G.encode_prompts(tok, instance_prompt(r, planted.item_records(), planted.profile_fields).all_messages())
                 for r in rows]
        got = I.reason_and_decide_instances(model, tok, insts, head=head, max_new_tokens=4, instances_per_batch=2)
        for ids, (reasonings, hidden, margin, score) in zip(insts, got):
            assert hidden.device.type == device and torch.isfinite(score).all() and torch.isfinite(margin).all()
            rows_full = D.decision_suffixes(tok, ids, reasonings)  # full prompt + body + <answer>, no cache
            _, m_ref, s_ref = D.score_decisions(model, tok, rows_full, head=head)
            if tol is not None:
                assert torch.allclose(score, s_ref, atol=tol) and torch.allclose(margin, m_ref, atol=tol)
            else:  # bfloat16: the same computation up to bf16 rounding
                assert float((margin - m_ref).abs().max()) <= 0.05 * float(m_ref.abs().max()) + 0.1


def _rl_trainer(tiny_dir, planted, device, dtype, **kw):
    from r2bench.r2rank.rl import RLTrainer, fresh_head
    from r2bench.lm.backbones import load_policy

    cfg = RLConfig(**{"backbone": str(tiny_dir), "instances_per_step": 2, "ranking_samples": 4, "baseline": "loo",
                      "max_reasoning_tokens": 3, "lr_policy": 1e-3, "lr_head": 1e-2, "head_hidden": 16,
                      "device": device, "dtype": dtype, **kw})
    model, tok = load_policy(cfg.backbone, cfg, device=device, dtype=dtype)
    torch.manual_seed(0)
    head = fresh_head(model.config.hidden_size, cfg.head_hidden, model.get_output_embeddings().weight.device)
    return RLTrainer(cfg, model, tok, head, planted, seed=0)


@pytest.mark.parametrize("variant", ["sft+rl", "rl-only", "mlp-only", "no-cot"])
@pytest.mark.parametrize("target", TARGETS)
def test_one_rl_step_on_the_models_device(target, variant, tiny_dir, planted, monkeypatch):
    from r2bench.lm import generation as G

    device, dtype = target
    tr = _rl_trainer(tiny_dir, planted, device, dtype, variant=variant, instances_per_batch=2)
    assert tr.model.dtype == _expected_dtype(device, dtype) and tr.device.type == device
    seen = []
    real_pick = G._pick

    def spy(logits, do_sample, temperature, top_p, generator):
        if do_sample:
            seen.append((logits.device, generator.device))
        return real_pick(logits, do_sample, temperature, top_p, generator)

    monkeypatch.setattr(G, "_pick", spy)
    frozen = {n: p.detach().clone() for n, p in tr.model.named_parameters()}
    head0 = [p.detach().clone() for p in tr.head.parameters()]
    log = tr.train_step(planted.split("train").head(2).to_dicts())
    assert seen and all(g.type == d.type == device for d, g in seen)  # sampled with a generator on the device
    assert np.isfinite(log.pl_loss) and np.isfinite(log.ppo_loss) and log.tokens > 0
    assert any(not torch.equal(a, b) for a, b in zip(head0, tr.head.parameters()))
    changed = any(not torch.equal(frozen[n], p) for n, p in tr.model.named_parameters())
    assert changed == (variant != "mlp-only")
    if device == "cuda":
        assert log.peak_mem_mb > 0


@pytest.mark.parametrize("target", TARGETS)
def test_one_sft_step(target, tiny_dir, tmp_path):
    import json

    import polars as pl

    from r2bench.r2rank.sft import run_sft

    device, dtype = target
    msgs = [[{"role": "user", "content": f"Candidate Item: Film {i}"}] for i in range(4)]
    pl.DataFrame({"user_id": [f"u{i}" for i in range(4)], "instance_id": list(range(4)),
                  "item_id": [f"i{i}" for i in range(4)], "label": [1, 0, 1, 0],
                  "messages": [json.dumps(m) for m in msgs],
                  "response": ["<answer>Recommend</answer>", "<answer>Not Recommend</answer>"] * 2,
                  "decision": ["Recommend", "Not Recommend"] * 2, "kept": [True] * 4}
                 ).write_parquet(tmp_path / "sft_data.parquet")
    (tmp_path / "stats.json").write_text("{}")
    final = run_sft(SFTConfig(backbone=str(tiny_dir), batch_size=4, lr=1e-3, checkpoint_every=0, device=device,
                              dtype=dtype), tmp_path, tmp_path / "sft", seed=0)
    log = pl.read_csv(tmp_path / "sft" / "log.csv")
    assert log.height == 1 and np.isfinite(log["loss"][0]) and log["tokens"][0] > 0
    assert (final / "model.safetensors").is_file()


@pytest.mark.parametrize("target", TARGETS)
def test_one_tallrec_step(target, tiny_dir, planted, tmp_path):
    pytest.importorskip("peft")
    from baselines.tallrec import TALLRecMethod

    device, dtype = target
    m = TALLRecMethod(TALLRecConfig(backbone=str(tiny_dir), lora_r=4, max_instances=2, negatives_per_positive=1,
                                    epochs=1, batch_size=4, save_to=str(tmp_path / "t"), device=device, dtype=dtype),
                      seed=0)
    m.fit(planted)
    assert m.info()["fit_batches"] == 1 and np.isfinite(m.info()["fit_loss_first"])
    assert m.model.get_output_embeddings().weight.device.type == device
    scores = m.score(planted, planted.split("test").head(2))
    assert scores.shape == (2, planted.k) and np.isfinite(scores).all()


def test_a_generator_on_another_device_is_a_clear_error():
    from r2bench.errors import R2BenchError
    from r2bench.lm.generation import _pick, check_generator

    logits = torch.zeros((2, 5), device="meta")
    with pytest.raises(R2BenchError, match="generator is on cpu but the model is on meta"):
        _pick(logits, True, 1.0, 1.0, torch.Generator())
    check_generator(torch.Generator(), torch.device("cpu"))  # same device: fine
    check_generator(None, torch.device("meta"))


def test_rankings_are_drawn_on_the_generators_device():
    from r2bench.r2rank.plackett_luce import sample_rankings

    s = torch.tensor([0.3, -1.0, 2.0, 0.0])
    a = sample_rankings(s, 3, generator=torch.Generator().manual_seed(1))
    b = sample_rankings(s, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (3, 4)
    with pytest.raises(RuntimeError):  # a meta-device generator does not exist; the draw follows the generator
        sample_rankings(s, 1, generator=torch.Generator(device="meta"))
