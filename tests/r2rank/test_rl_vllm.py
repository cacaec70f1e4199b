"""RL rollouts from a real vLLM server that follows the policy: the LoRA adapter of every step is loaded into it.

SmolLM2 (served by the session's ``vllm_server``, float32) is the policy's backbone; the
policy is a LoRA adapter trained with a large learning rate so that one step moves the
model's log-probs far more than the float32 tolerance. Checked here:

- after step k the server, asked with the step-k adapter's name, gives the first-token
  log-probs of the local step-k policy (and not those of the base model);
- the rollouts of step k+1 were requested from the step-k adapter (the response cache
  records which model every request named);
- a run killed after a checkpoint resumes by publishing that checkpoint's adapter;
- a load the server refuses stops the run with the server's reason; a full fine-tune is
  refused before anything is sent.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.server

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("openai")

PROMPT = "<|im_start|>user\nShould I watch a film about a boxer?<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def small_bench(tmp_path_factory):
    from r2bench.data.benchmark import load_benchmark
    from r2bench.data.synthetic import make_synthetic_benchmark

    return load_benchmark(make_synthetic_benchmark(tmp_path_factory.mktemp("rlv_bench"), n_users=30, n_items=40,
                                                   seed=1, max_len=8, n_candidates=5, history_len=3))


def _cfg(srv, model_dir, tmp_path, **kw):
    from r2bench.r2rank.train_config import RLConfig

    base = dict(backbone=str(model_dir), variant="rl-only", generator="openai", base_url=srv.base_url,
                model=srv.alias, server_token_ids=True, cache_path=str(tmp_path / "cache.sqlite"), concurrency=5,
                max_retries=1, timeout_s=600, lora_r=4, lora_alpha=32, instances_per_step=1, ranking_samples=2,
                max_reasoning_tokens=4, ppo_epochs=1, lr_policy=0.05, lr_head=0.01, head_hidden=16,
                device="cpu", dtype="float32", eval_instances=0, checkpoint_every=1, train_instances="all")
    base.update(kw)
    return RLConfig(**base)


def _served_first_token(srv, model: str, ids: list[int]) -> dict[int, float]:
    body = {"model": model, "prompt": ids, "max_tokens": 1, "temperature": 0, "logprobs": 5,
            "return_tokens_as_token_ids": True}
    req = urllib.request.Request(f"{srv.base_url}/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        top = json.load(r)["choices"][0]["logprobs"]["top_logprobs"][0]
    return {int(t.split(":", 1)[1]): float(v) for t, v in top.items()}


def _local_first_token(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].float(), -1)


def _requests_by_model(cache: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{cache}?mode=ro", uri=True) as conn:
        return dict(conn.execute("SELECT model, COUNT(*) FROM responses GROUP BY model").fetchall())


def test_rollouts_come_from_the_adapter_of_the_current_step(vllm_server, smollm2_dir, small_bench, tmp_path):
    from r2bench.lm.backbones import load_policy
    from r2bench.llm.lora_sync import adapter_name
    from r2bench.r2rank.rl import RLTrainer, fresh_head

    cfg = _cfg(vllm_server, smollm2_dir, tmp_path)
    model, tok = load_policy(cfg.backbone, cfg, device="cpu", dtype="float32")
    trainer = RLTrainer(cfg, model, tok, fresh_head(model.config.hidden_size, 16), small_bench, seed=0,
                        adapters_dir=tmp_path / "adapters")
    src = trainer.rollouts
    prefix = src.sync.prefix
    ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    rows = small_bench.split("train").to_dicts()
    base_local = _local_first_token(model, ids)

    trainer.train_step(rows[:1])  # step 0's rollouts from the published initial adapter, then step 1 published
    assert src.served_model == adapter_name(prefix, 1) and src.published_step == 1
    assert _requests_by_model(tmp_path / "cache.sqlite") == {adapter_name(prefix, 0): 5}
    step1_local = _local_first_token(model, ids)
    served = _served_first_token(vllm_server, adapter_name(prefix, 1), ids)
    for token, lp in served.items():
        assert lp == pytest.approx(float(step1_local[token]), abs=2e-3)
    assert max(abs(float(step1_local[t]) - float(base_local[t])) for t in served) > 0.02  # the step moved it

    trainer.train_step(rows[1:2])  # step 1's rollouts name the step-1 adapter
    assert _requests_by_model(tmp_path / "cache.sqlite") == {adapter_name(prefix, 0): 5, adapter_name(prefix, 1): 5}
    step2_local = _local_first_token(model, ids)
    for token, lp in _served_first_token(vllm_server, adapter_name(prefix, 2), ids).items():
        assert lp == pytest.approx(float(step2_local[token]), abs=2e-3)
    models = src.sync.served_models()
    assert adapter_name(prefix, 0) not in models and adapter_name(prefix, 2) in models  # old adapters unloaded
    for name in list(src.sync.loaded):
        src.sync.unload(name)


def test_a_resumed_run_publishes_its_checkpoint_adapter(vllm_server, smollm2_dir, small_bench, tmp_path):
    from safetensors.torch import load_file

    from r2bench.llm.lora_sync import adapter_name
    from r2bench.r2rank.rl import run_rl

    out = tmp_path / "rl"
    run_rl(_cfg(vllm_server, smollm2_dir, tmp_path, steps=1), small_bench, out, seed=0)  # "killed" after step 1
    ckpt = out / "checkpoints" / "step-000001" / "policy" / "adapter_model.safetensors"
    assert ckpt.is_file()
    import shutil

    shutil.rmtree(out / "served-adapters")  # nothing of the first process survives but its checkpoint
    run_rl(_cfg(vllm_server, smollm2_dir, tmp_path, steps=2), small_bench, out, seed=0)
    by_model = _requests_by_model(tmp_path / "cache.sqlite")
    step1 = [m for m in by_model if m.endswith(adapter_name("", 1))]
    assert len(step1) == 1 and by_model[step1[0]] == 5  # the resumed step's rollouts named the checkpoint adapter
    served = out / "served-adapters"
    # the adapter published at the resumption is exactly the checkpoint's (same tensors)
    published = load_file(str(served / step1[0] / "adapter_model.safetensors"))
    saved = load_file(str(ckpt))
    assert published.keys() == saved.keys() and all(torch.equal(published[k], saved[k]) for k in saved)
    assert (out / "final" / "head.safetensors").is_file()


def test_a_refused_load_stops_the_run_and_full_finetuning_is_refused(vllm_server, smollm2_dir, small_bench, tmp_path):
    from r2bench.errors import R2BenchError
    from r2bench.r2rank.rl import run_rl

    with pytest.raises(R2BenchError) as err:  # rank 32 > the server's --max-lora-rank 16
        run_rl(_cfg(vllm_server, smollm2_dir, tmp_path, steps=1, lora_r=32), small_bench, tmp_path / "rl32", seed=0)
    msg = str(err.value)
    assert "load_lora_adapter" in msg and vllm_server.base_url in msg and "HTTP 4" in msg, msg
    assert not (tmp_path / "rl32" / "final").exists()
    with pytest.raises(R2BenchError, match="needs a LoRA policy"):
        run_rl(_cfg(vllm_server, smollm2_dir, tmp_path, steps=1, lora_r=0), small_bench, tmp_path / "full", seed=0)
    assert not (tmp_path / "full" / "checkpoints").exists()
