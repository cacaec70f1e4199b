"""R2ec on a tiny random Llama: prompts, learning a planted signal, reloading, resuming, serving-engine rollouts."""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from tests.baselines.tiny import tiny_lm, tribes_benchmark  # noqa: E402


@pytest.fixture(scope="module")
def tribes(tmp_path_factory):
    from r2bench.data.benchmark import load_benchmark

    return load_benchmark(tribes_benchmark(tmp_path_factory.mktemp("tribes")))


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, tribes):
    model, tok = tiny_lm(tribes)
    d = tmp_path_factory.mktemp("r2ec_base")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def _method(bench, tmp_path, **kw):
    from baselines.r2ec import R2ecConfig, R2ecMethod

    model, tok = tiny_lm(bench)
    cfg = R2ecConfig(**{"lora_r": 0, "max_instances": 32, "epochs": 3, "users_per_step": 4, "group_size": 4,
                        "max_reasoning_tokens": 3, "lr": 1e-3, "warmup_steps": 0, "eval_every": 4,
                        "val_instances": 12, "patience": 100, "save_to": str(tmp_path / "r2ec"), **kw})
    m = R2ecMethod(cfg, seed=0)
    m.set_model(model, tok)
    return m


def _ndcg(scores, inst):
    from r2bench.eval.metrics import per_instance_metrics

    return per_instance_metrics(scores, inst["target_index"].to_numpy(), ["ndcg@10"])["ndcg@10"].mean()


def test_r2ec_is_registered_in_the_llm_group():
    from r2bench.methods import METHODS, method_class
    from r2bench.report.tables import group_of

    assert "r2ec" in [e.name for e in METHODS.entries()]
    assert method_class("r2ec").__name__ == "R2ecMethod"
    assert group_of("r2ec") == "LLM-based"


def test_prompts_follow_the_released_format(tribes):
    from baselines.r2ec_prompts import close_reasoning, domain_words, format_timedelta, item_message, user_message

    assert format_timedelta(dt.timedelta(days=3, hours=4, minutes=30)) == "3d 4.5h ago"
    assert format_timedelta(dt.timedelta(hours=2, minutes=10)) == "2h 10.0min ago"
    assert format_timedelta(dt.timedelta(minutes=7, seconds=30)) == "7.5min ago"
    w = domain_words("movielens-100k")
    row = tribes.split("test").to_dicts()[0]
    ratings = {(row["user_id"], i): 4.0 for i in row["history"]}
    msg = user_message(row, tribes.item_titles, ratings, w, window=2)
    head, *lines = msg.split("\n\n")[1].split("\n")
    assert msg.startswith("Analyze in depth and finally recommend next movie I might watch inside <answer> and "
                          "</answer>.\nFor example, <answer>a movie</answer>.")
    assert head == "Below is my historical movie views and ratings (out of 5):"
    assert len(lines) == 2 and lines[-1].endswith(f"[{tribes.item_titles[row['history'][-1]]}] (4.0)")  # oldest first
    assert lines[-1].startswith("1d 0.0h ago: ")  # one day before the target
    item = item_message(tribes.item_records()[row["target"]], w)
    assert item.startswith("Summarize key attributes of the following movie inside <answer> and </answer>.\n\nTitle: ")
    assert "\nGenre: " in item
    _, tok = tiny_lm(tribes)
    oid = tok("<answer>", add_special_tokens=False)["input_ids"]
    some = tok(" I like Gold", add_special_tokens=False)["input_ids"]
    assert close_reasoning(tok, some, oid) == (some + oid, False)
    wrote = tok(" Gold<answer> more", add_special_tokens=False)["input_ids"]
    ids, ok = close_reasoning(tok, wrote, oid)
    assert ok and tok.decode(ids).endswith("<answer>") and "more" not in tok.decode(ids)


def test_r2ec_learns_the_planted_signal(tribes, tmp_path):
    """Users watch one tribe's films; RecPO (full fine-tuning of the tiny model) aligns their <answer> states
    with their tribe's item embeddings."""
    m = _method(tribes, tmp_path)
    test = tribes.split("test").head(40)
    m.model.eval()
    before = _ndcg(m._score_rows(tribes, test.to_dicts()), test)
    m.fit(tribes)
    scores = m.score(tribes, test)
    after = _ndcg(scores, test)
    info = m.info()
    assert scores.shape == (40, tribes.k) and np.isfinite(scores).all()
    assert after >= before + 0.15, (before, after)
    assert info["steps"] == 24 and [e["step"] for e in info["evals"]] == [0, 4, 8, 12, 16, 20, 24]
    assert info["best_step"] == max(info["evals"], key=lambda e: e["val_ndcg10"])["step"]
    import polars as pl

    log = pl.read_csv(tmp_path / "r2ec" / "log.csv")
    assert log.height == 24 and log["adv_sum_max"].max() < 1e-6  # z-scored groups sum to zero
    assert (log["reasoning_tokens"] <= 3 + 3).all()  # at most 3 generated tokens + the 3 of <answer>
    assert set(m.artifacts()) == {"rationales"}


def test_lora_trains_only_the_adapter_reloads_and_scores_ignore_candidate_order(tribes, tmp_path, base_dir):
    from baselines.r2ec import R2ecConfig, R2ecMethod

    m = _method(tribes, tmp_path, backbone=str(base_dir), lora_r=4, lora_alpha=16, lora_targets="all-linear",
                max_instances=8, epochs=1, eval_every=0, val_instances=4, reward_over="candidates")
    m.fit(tribes)
    trainable = [n for n, p in m.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    inst = tribes.split("test").head(3)
    scores = m.score(tribes, inst)
    again = R2ecMethod(R2ecConfig(backbone=str(base_dir), adapter=str(tmp_path / "r2ec" / "final"),
                                  max_reasoning_tokens=3, device="cpu", dtype="float32"), seed=0)
    again.fit(tribes)
    assert again.info()["fitted"] is False
    assert np.allclose(again.score(tribes, inst), scores, atol=1e-3)
    flipped = again.score(tribes, inst.with_columns(inst["candidates"].list.reverse()))
    assert np.allclose(flipped[:, ::-1], again.score(tribes, inst), atol=1e-4)


def test_reasoning_tokens_get_gradient_only_per_sequence(tribes, tmp_path):
    """On the model: the policy term alone moves the weights under per-sequence advantages and (almost) not
    under the released broadcast, for one user's group of rollouts."""
    from baselines.r2ec_model import user_pass
    from baselines.recpo import group_advantages, recpo_loss

    m = _method(tribes, tmp_path)
    m._prepare_training_model()
    user_prompt, item_prompt = m._prompter(tribes)
    row = tribes.split("train").to_dicts()[0]
    prompt = user_prompt(row)
    outs = m._rollouts([prompt], greedy=False, seeds=[1])[0]
    adv = group_advantages(torch.tensor([[0.1, 0.4, 0.2, 0.9]], dtype=torch.float64)).view(-1).float()
    relabel = torch.zeros(4, dtype=torch.bool)  # no item term: the policy term alone
    norms = {}
    for mode in ("per-sequence", "released"):
        m.model.zero_grad(set_to_none=True)
        up = user_pass(m.policy, prompt, [ids for ids, _ in outs], m._pad())
        item_h = up.user_h[:1].detach()
        loss, _ = recpo_loss(up.logps, up.mask, up.user_h, item_h, torch.zeros(4, dtype=torch.long), adv, relabel,
                             broadcast=mode)
        loss.backward()
        norms[mode] = float(torch.sqrt(sum((p.grad ** 2).sum() for p in m.model.parameters() if p.grad is not None)))
    assert norms["per-sequence"] > 1e-3 and norms["released"] < 1e-4 * norms["per-sequence"], norms


def test_resumed_training_equals_an_uninterrupted_run(tribes, tmp_path, monkeypatch):
    """A run killed right after its step-2 checkpoint and started again ends exactly where an uninterrupted
    run ends (weights, AdamW moments and the rewards' item table all come back from the checkpoint)."""
    from baselines.trainable import Checkpoints

    kw = {"max_instances": 8, "epochs": 2, "eval_every": 0, "val_instances": 3, "select_best": False,
          "checkpoint_every": 1}
    full = _method(tribes, tmp_path / "a", **kw)
    full.fit(tribes)
    real_save = Checkpoints.save

    def killed(self, name, *a, **k):
        out = real_save(self, name, *a, **k)
        if name == "step-000002":
            raise KeyboardInterrupt("killed after the step-2 checkpoint")
        return out

    monkeypatch.setattr(Checkpoints, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        _method(tribes, tmp_path / "b", **kw).fit(tribes)
    monkeypatch.setattr(Checkpoints, "save", real_save)
    resumed = _method(tribes, tmp_path / "b", **kw)
    resumed.fit(tribes)
    import polars as pl

    assert resumed.info()["steps"] == 4
    assert pl.read_csv(tmp_path / "b" / "r2ec" / "log.csv")["step"].to_list() == [1, 2, 3, 4]
    inst = tribes.split("test").head(3)
    assert np.allclose(resumed.score(tribes, inst), full.score(tribes, inst), atol=1e-5)


class _FakeVLLM(BaseHTTPRequestHandler):
    """/v1/completions answers a fixed reasoning; /v1/load_lora_adapter records the adapters it is given."""

    loads: list = []
    models: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path.endswith("_lora_adapter"):  # load_lora_adapter / unload_lora_adapter
            self.loads.append(body)
            out = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
        else:
            self.models.append(body["model"])
            out = json.dumps({"id": "x", "object": "text_completion", "created": 0, "model": body["model"],
                              "choices": [{"index": 0, "text": " Gold film", "finish_reason": "stop",
                                           "stop_reason": "<answer>", "logprobs": None}],
                              "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *a):
        pass


def test_openai_generator_syncs_the_adapter_after_every_step(tribes, tmp_path, base_dir):
    pytest.importorskip("openai")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _FakeVLLM)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    _FakeVLLM.loads, _FakeVLLM.models = [], []
    try:
        m = _method(tribes, tmp_path, backbone=str(base_dir), lora_r=4, lora_targets="all-linear", max_instances=8,
                    epochs=1, eval_every=0, val_instances=2, generator="openai", cache=False,
                    base_url=f"http://127.0.0.1:{srv.server_port}/v1", model="base")
        m.fit(tribes)
        m.score(tribes, tribes.split("test").head(2))
    finally:
        srv.shutdown()
    names = [x["lora_name"] for x in _FakeVLLM.loads if "lora_path" in x]  # loads (unloads carry no path)
    assert names[:2] == ["r2ec-step-000001", "r2ec-step-000002"] and names[-1].startswith("r2ec-best-step-")
    from pathlib import Path

    kept = [x for x in _FakeVLLM.loads if "lora_path" in x][-1]  # the kept state, as the test reasonings' adapter
    assert (Path(kept["lora_path"]) / "adapter_model.safetensors").is_file()
    seen = _FakeVLLM.models
    # val before training (2) and step 1's rollouts (4 users x 4) from the base model; step 2's from the adapter
    # loaded after step 1; the final val (2) after step 2's sync; the test reasonings (2) from the kept state
    assert seen[:18] == ["base"] * 18 and seen[18:34] == ["r2ec-step-000001"] * 16
    assert seen[34:36] == ["r2ec-step-000002"] * 2
    assert seen[36:] == [names[-1]] * 2
    assert m.info()["generator"] == "openai"
