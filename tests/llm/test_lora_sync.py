"""LoRA adapters published to a real vLLM server (runtime loading) answer like the local peft model.

The adapter's B matrices are random (peft's ``init_lora_weights=False``), so the adapted
model differs from the base model by far more than the float32 tolerance: the test could
not pass if the server ignored the adapter.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

pytestmark = pytest.mark.server

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

PROMPT = "<|im_start|>user\nName a film about a boxer.<|im_end|>\n<|im_start|>assistant\n"
TOP = 5


def _server_first_token(srv, model: str, ids: list[int]) -> dict[int, float]:
    body = {"model": model, "prompt": ids, "max_tokens": 1, "temperature": 0, "logprobs": TOP,
            "return_tokens_as_token_ids": True}
    req = urllib.request.Request(f"{srv.base_url}/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        top = json.load(r)["choices"][0]["logprobs"]["top_logprobs"][0]
    return {int(t.split(":", 1)[1]): float(v) for t, v in top.items()}


def _local_first_token(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
    return torch.log_softmax(logits, -1)


@pytest.fixture(scope="module")
def lora_model(smollm2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    cfg = peft.LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
    model = peft.get_peft_model(base, cfg).eval()
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    return model, tok


def test_published_adapter_answers_like_the_local_policy(vllm_server, lora_model, tmp_path):
    from r2bench.llm.lora_sync import LoRASync

    model, tok = lora_model
    ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    sync = LoRASync(vllm_server.base_url, tmp_path / "adapters", prefix="t1", keep=2)
    name = sync.publish(model, step=1)
    assert name == "t1-step-000001" and name in sync.served_models()
    assert (tmp_path / "adapters" / name / "adapter_model.safetensors").is_file()

    served = _server_first_token(vllm_server, name, ids)
    local = _local_first_token(model, ids)
    with model.disable_adapter():
        base_local = _local_first_token(model, ids)
    assert len(served) == TOP
    for token, lp in served.items():
        assert lp == pytest.approx(float(local[token]), abs=2e-3), (token, lp, float(local[token]))
    # the adapter moves these log-probs far more than the tolerance: the server really used it
    assert max(abs(float(local[t]) - float(base_local[t])) for t in served) > 0.05
    base_served = _server_first_token(vllm_server, vllm_server.alias, ids)
    for token, lp in base_served.items():
        assert lp == pytest.approx(float(base_local[token]), abs=2e-3)
    sync.unload(name)
    assert name not in sync.served_models()


def test_each_step_gets_a_new_name_and_old_ones_are_unloaded(vllm_server, lora_model, tmp_path):
    from r2bench.llm.lora_sync import LoRASync

    model, tok = lora_model
    ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    sync = LoRASync(vllm_server.base_url, tmp_path / "adapters", prefix="t2", keep=2)
    first = _local_first_token(model, ids)
    names = []
    for step in (1, 2, 3):
        with torch.no_grad():  # an "optimizer step": every LoRA B matrix moves
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.add_(0.02 * torch.randn_like(p))
        names.append(sync.publish(model, step))
    served_names = sync.served_models()
    assert names[0] not in served_names and names[1] in served_names and names[2] in served_names
    assert not (tmp_path / "adapters" / names[0]).exists()
    now = _local_first_token(model, ids)
    served = _server_first_token(vllm_server, names[2], ids)
    for token, lp in served.items():  # the server follows the latest step, not the first one
        assert lp == pytest.approx(float(now[token]), abs=2e-3)
    assert max(abs(float(now[t]) - float(first[t])) for t in served) > 0.01
    for n in names[1:]:
        sync.unload(n)


def test_a_failed_load_says_why(vllm_server, tmp_path):
    from r2bench.errors import R2BenchError
    from r2bench.llm.lora_sync import LoRASync

    sync = LoRASync(vllm_server.base_url, tmp_path / "adapters", prefix="t3")
    with pytest.raises(R2BenchError) as err:
        sync.load("t3-missing", tmp_path / "no-such-adapter")
    assert "load_lora_adapter of 't3-missing'" in str(err.value) and "HTTP 4" in str(err.value)
    dead = LoRASync("http://127.0.0.1:9/v1", tmp_path / "adapters", prefix="t4")
    with pytest.raises(R2BenchError, match="did not answer"):
        dead.load("t4", tmp_path)
    with pytest.raises(R2BenchError, match="set lora_r > 0"):
        sync.save(torch.nn.Linear(2, 2), "t3-full")
