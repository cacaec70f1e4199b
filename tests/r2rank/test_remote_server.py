"""generator=openai against a real vLLM server serving SmolLM2-135M-Instruct (completions endpoint).

The server (tests/server_fixtures.py's ``vllm_server``) serves the converted SmolLM2 folder,
and the decision is computed locally by the same folder in Hugging Face format. The
prompt goes out as token ids and the reasoning comes back as token ids
(``server_token_ids=true``, vLLM's ``return_tokens_as_token_ids``), so what R2Rank scores is
exactly what the server generated. Few instances, short reasonings.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.server

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("openai")

MAX_TOKENS = 8
LIMIT = 1


# `vllm_server`, `smollm2_dir`: the guarded session fixtures of tests/server_fixtures.py


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


def test_openai_generator_run_is_cached_and_scores_like_hf(vllm_server, smollm2_dir, small_bench, tmp_path):
    from r2bench.lm import generation as G
    from r2bench.r2rank import decision as D
    from r2bench.lm.backbones import load_backbone
    from r2bench.lm.prompts import instance_prompt

    run = _run(small_bench, vllm_server, smollm2_dir, tmp_path, instances_per_batch=2, server_token_ids=True)
    info = run.meta["info"]
    assert info["generator"] == "openai" and info["candidates_scored"] == 5 * LIMIT
    assert info["llm"]["sent"] == 5 * LIMIT and info["llm"]["completion_tokens"] > 0 and info["llm"]["failed"] == 0
    assert info["token_ids_from_server"] == 5 * LIMIT  # vLLM returned the generated ids: nothing re-tokenized
    rat = run.table("rationales")
    assert rat.height == 5 * LIMIT and rat["n_tokens"].max() <= MAX_TOKENS + 4 and (rat["n_tokens"] > 0).any()
    assert set(rat["finished"].to_list()) <= {True, False} and info["finished"] == int(rat["finished"].sum())
    assert run.has_metrics() and np.isfinite(run.scores["score"].to_numpy()).all()

    # a second run sends nothing: every reasoning comes from the cache, with the same scores
    again = _run(small_bench, vllm_server, smollm2_dir, tmp_path, instances_per_batch=1, server_token_ids=True)
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


def test_server_tokenizes_the_prompt_as_r2rank_does(vllm_server, smollm2_dir, small_bench):
    """The text prompt, sent as text, becomes the very token ids R2Rank scores (no BOS added, specials parsed)."""
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
    base = vllm_server.base_url.rsplit("/v1", 1)[0]
    req = urllib.request.Request(f"{base}/tokenize", headers={"Content-Type": "application/json"},
                                 data=json.dumps({"model": vllm_server.alias, "prompt": text}).encode())
    with urllib.request.urlopen(req, timeout=30) as r:
        server_ids = json.load(r)["tokens"]
    assert server_ids == G.encode_prompts(tok, [msgs])[0]


def test_mlp_only_rollouts_from_the_server(vllm_server, smollm2_dir, small_bench, tmp_path):
    """mlp-only RL with generator=openai: the server writes the reasonings, the head learns from the local states."""
    from r2bench.r2rank.rl import RLTrainer, fresh_head
    from r2bench.r2rank.train_config import RLConfig
    from r2bench.lm.backbones import load_policy

    cfg = RLConfig(backbone=str(smollm2_dir), variant="mlp-only", generator="openai", base_url=vllm_server.base_url,
                   server_token_ids=True,
                   model=vllm_server.alias, cache_path=str(tmp_path / "c.sqlite"), concurrency=2, max_retries=1,
                   timeout_s=600, instances_per_step=1, ranking_samples=4, max_reasoning_tokens=4, head_hidden=16,
                   lr_head=0.1, device="cpu", dtype="float32")
    model, tok = load_policy(cfg.backbone, cfg, device="cpu", dtype="float32")
    head = fresh_head(model.config.hidden_size, 16)
    with torch.no_grad():
        head.net[-1].weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(0))
    tr = RLTrainer(cfg, model, tok, head, small_bench, seed=0)
    before = [p.detach().clone() for p in head.parameters()]
    log = tr.train_step(small_bench.split("train").head(1).to_dicts())
    assert tr.rollouts.client.usage()["sent"] == 5 and log.tokens > 0 and np.isfinite(log.pl_loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, head.parameters()))
    rows = small_bench.split("val").head(1).to_dicts()
    first = tr.evaluate(rows)
    sent = tr.rollouts.client.usage()["sent"]
    assert tr.evaluate(rows) == first and tr.rollouts.client.usage()["sent"] == sent  # greedy reasonings come from the cache
