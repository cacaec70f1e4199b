"""R2Rank training: rollouts consistent with inference, RL that learns, resumable runs, end to end.

The benchmark has a planted signal: every user watches "Gold" films (one random
other film first, then Gold ones), so the target is a Gold film while most
negatives are not. A tiny random Llama (tokenizer trained here on the prompts)
must learn to rank the Gold candidate first. 10 candidates per instance keep it fast.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import polars as pl
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from r2bench.r2rank.train_config import RLConfig, SFTConfig, SynthesizeConfig  # noqa: E402

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
GOLD_EVERY = 8


# one torch thread: the autouse fixture in tests/r2rank/conftest.py


def planted_benchmark(out, n_users: int = 150, n_items: int = 60, n_candidates: int = 10, seed: int = 0):
    from r2bench.data.build import BuildSpec, build_benchmark
    from r2bench.data.store import write_benchmark

    rng = np.random.default_rng(seed)
    ids = [f"i{j:03d}" for j in range(n_items)]
    gold = [j for j in range(n_items) if j % GOLD_EVERY == 0]
    other = [j for j in range(n_items) if j % GOLD_EVERY]
    genres = ("Action", "Comedy", "Drama", "Horror")
    items = pl.DataFrame({
        "item_id": ids, "title": [f"Film {j}" for j in range(n_items)],
        "genre": ["Gold" if j % GOLD_EVERY == 0 else genres[j % 4] for j in range(n_items)],
    })
    u, it, ts = [], [], []
    for k in range(n_users):
        seq = [int(rng.choice(other))] + [int(j) for j in rng.choice(gold, size=int(rng.integers(2, 4)), replace=False)]
        for t, j in enumerate(seq):
            u.append(f"u{k:03d}")
            it.append(ids[j])
            ts.append(1_640_995_200_000 + t * 86_400_000)
    inter = pl.DataFrame({"user_id": u, "item_id": it, "timestamp": ts},
                         schema={"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64})
    spec = BuildSpec(seed=seed, history_len=3, n_candidates=n_candidates, split_ratios=(0.6, 0.1, 0.3))
    return write_benchmark(build_benchmark("planted", inter, items, spec, source={"name": "planted-gold"}), out)


def make_tiny_lm(texts, vocab: int = 800, hidden: int = 32, seed: int = 0):
    """A 2-layer random Llama and a byte-level BPE tokenizer trained on ``texts`` (ChatML template)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<pad>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(list(texts) + ["<answer>Recommend</answer> <answer>Not Recommend</answer> Yes No"] * 5,
                           trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<|im_end|>")
    tok.chat_template = CHATML
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    return LlamaForCausalLM(cfg).eval(), tok


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    from r2bench.data.benchmark import load_benchmark

    return load_benchmark(planted_benchmark(tmp_path_factory.mktemp("planted")))


def prompt_texts(bench, n: int = 20) -> list[str]:
    from r2bench.lm.prompts import instance_prompt

    recs, texts = bench.item_records(), []
    for r in bench.instances.head(n).to_dicts():
        ip = instance_prompt(r, recs, bench.profile_fields)
        texts += [m[0]["content"] for m in ip.all_messages()[:3]]
        texts += [instance_prompt(r, recs, bench.profile_fields, no_cot=True).messages(0)[0]["content"]]
    return texts


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, planted):
    """The tiny model + tokenizer saved as a Hugging Face folder (each test loads its own copy)."""
    model, tok = make_tiny_lm(prompt_texts(planted))
    d = tmp_path_factory.mktemp("tiny_policy")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def _trainer(tiny_dir, bench, **kw):
    from r2bench.r2rank.rl import RLTrainer, fresh_head
    from r2bench.lm.backbones import load_policy

    cfg = RLConfig(**{"backbone": str(tiny_dir), "instances_per_step": 4, "ranking_samples": 8, "baseline": "loo",
                      "max_reasoning_tokens": 2, "lr_policy": 3e-4, "lr_head": 1e-2, "head_hidden": 64, "micro_batch": 20,
                      **kw})
    model, tok = load_policy(cfg.backbone, cfg, device="cpu", dtype="float32")
    torch.manual_seed(0)
    head = fresh_head(model.config.hidden_size, cfg.head_hidden)
    return RLTrainer(cfg, model, tok, head, bench, seed=0), cfg


def test_rollout_matches_inference_path(tiny_dir, planted):
    """Training reads the same decision hidden states, hence scores, as `r2bench run --method r2rank`."""
    from r2bench.lm.policy import Policy
    from r2bench.r2rank.inference import score_prompts

    tr, _ = _trainer(tiny_dir, planted, max_reasoning_tokens=6)
    row = planted.split("test").to_dicts()[0]
    scores, ro, hidden = tr.scores_of(row, greedy=True)
    ref = score_prompts(tr.model, tr.tok, tr._prompt_ids(row), head=tr.head, max_new_tokens=6)
    assert [r.reasoning.text for r in ref] == ro.texts
    assert np.allclose(scores.numpy(), [r.score for r in ref], atol=1e-4)
    # the training forward sees the same tokens at the same positions: greedy tokens are its argmax
    with torch.no_grad():
        h = tr.model.get_decoder()(input_ids=ro.input_ids, attention_mask=ro.attention_mask,
                                   position_ids=(ro.attention_mask.cumsum(-1) - 1).clamp_min(0)).last_hidden_state
        p, r = ro.prompt_width, ro.response_width
        argmax = tr.model.get_output_embeddings()(h[:, p - 1:p + r - 1]).argmax(-1)
        assert torch.allclose(Policy(tr.model)(ro).hidden, hidden, atol=1e-5)
    m = ro.response_mask.bool()
    assert m.sum() > 0 and torch.equal(argmax[m], ro.response_ids[m])


def test_first_epoch_ratio_is_one_and_clipping_acts(tiny_dir, planted):
    tr, _ = _trainer(tiny_dir, planted, lr_policy=0.05, ppo_epochs=3, max_reasoning_tokens=4)
    rows = planted.split("train").head(2).to_dicts()
    items = tr._collect(rows, torch.Generator().manual_seed(0))
    with torch.no_grad():
        new = tr.policy(items[0].rollout).logprobs
    assert torch.allclose(new, items[0].rollout.old_logprobs, atol=1e-5)  # ratio 1 before any update
    log = tr.train_step(rows)
    assert log.clip_fraction > 0  # with a large step, later epochs leave the trust region
    assert log.approx_kl > 0 and log.tokens > 0 and np.isfinite(log.pl_loss)


def test_micro_batching_gives_the_same_gradients(tiny_dir, planted):
    tr, _ = _trainer(tiny_dir, planted, max_reasoning_tokens=3)
    with torch.no_grad():  # a non-zero head so that the PL gradient reaches the backbone
        tr.head.net[-1].weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(1))
    items = tr._collect(planted.split("train").head(1).to_dicts(), torch.Generator().manual_seed(3))
    grads = []
    for mb in (planted.k, 3):
        tr.cfg.micro_batch = mb
        tr.optimizer.zero_grad(set_to_none=True)
        tr._instance_backward(items[0], 1, float(items[0].rollout.response_mask.sum()))
        grads.append([p.grad.clone() for g in tr.optimizer.param_groups for p in g["params"]])
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(*grads))  # float32 batch noise only
    assert any(a.abs().sum() > 0 for a in grads[0])


def test_rl_improves_held_out_ndcg(tiny_dir, planted):
    tr, cfg = _trainer(tiny_dir, planted, variant="rl-only")
    test = planted.split("test").head(30).to_dicts()
    train = planted.split("train").to_dicts()
    start = tr.evaluate(test)
    from r2bench.eval.metrics import random_expectation

    chance = random_expectation("ndcg@10", planted.k)
    assert start == pytest.approx(chance, abs=1e-9)  # a fresh head ties every score: exactly chance
    rewards = []
    for s in range(8):
        idx = np.random.default_rng(s).choice(len(train), cfg.instances_per_step, replace=False)
        rewards.append(tr.train_step([train[i] for i in idx]).reward)
    end = tr.evaluate(test)
    assert end >= start + 0.15, (start, end, rewards)


@pytest.mark.parametrize("variant", ["mlp-only", "no-cot"])
def test_variants_take_a_step(tiny_dir, planted, variant):
    tr, _ = _trainer(tiny_dir, planted, variant=variant, instances_per_step=2)
    frozen = {n: p.detach().clone() for n, p in tr.model.named_parameters()}
    head0 = [p.detach().clone() for p in tr.head.parameters()]
    log = tr.train_step(planted.split("train").head(2).to_dicts())
    assert any(not torch.equal(a, b) for a, b in zip(head0, tr.head.parameters()))
    changed = any(not torch.equal(frozen[n], p) for n, p in tr.model.named_parameters())
    assert changed == (variant != "mlp-only")
    if variant == "no-cot":
        assert tr.no_cot and log.tokens > 0


def test_run_rl_resumes_and_exports(tiny_dir, planted, tmp_path):
    from r2bench.pipeline import run_method
    from r2bench.r2rank.rl import run_rl

    cfg = RLConfig(backbone=str(tiny_dir), steps=2, instances_per_step=1, ranking_samples=2, max_reasoning_tokens=2,
                   checkpoint_every=1, eval_every=1, eval_instances=2, device="cpu", dtype="float32")
    out = tmp_path / "rl"
    run_rl(cfg, planted, out, seed=0)
    assert (out / "checkpoints" / "LATEST").read_text().strip() == "step-000002"
    cfg.steps = 3
    final = run_rl(cfg, planted, out, seed=0)  # resumes at step 2
    log = pl.read_csv(out / "log.csv")
    assert log["step"].to_list() == [1, 2, 3]
    assert {"reward", "greedy_ndcg", "clip_fraction", "tokens_per_s", "peak_mem_mb"} <= set(log.columns)
    assert (final / "head.safetensors").is_file() and (final / "model.safetensors").is_file()
    meta = json.loads((final / "r2rank_train.json").read_text())
    assert meta["steps"] == 3 and meta["benchmark_fingerprint"] == planted.fingerprint
    run = run_method("r2rank", planted, split="test", limit=3, out=tmp_path / "runs",
                     overrides={"backbone": str(final), "max_reasoning_tokens": "2", "device": "cpu"})
    metrics = pl.read_parquet(run / "metrics.parquet")
    assert metrics.height == 3 and metrics["ndcg@10"].is_finite().all()


# ------------------------------------------------------------------ end to end with a teacher server


class _Teacher(BaseHTTPRequestHandler):
    """A stdlib OpenAI-compatible teacher: recommends Gold films, rejects the others."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        cand = prompt.rsplit("Candidate Item:", 1)[-1]
        decision = "Recommend" if "Gold" in cand else "Not Recommend"
        text = ("#Initial reasoning: the history is Gold films.\n#Self-check: the genre is the only evidence.\n"
                f"#Final conclusion and suggestion: decide by genre.\n<answer>{decision}</answer>")
        if "Film 1 " in cand:  # a deliberately wrong answer, which synthesis must drop
            text = text.replace(decision, "Recommend" if decision != "Recommend" else "Not Recommend")
        payload = json.dumps({
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 30, "total_tokens": 130},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def teacher_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Teacher)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_end_to_end_synthesize_sft_rl_run_evaluate(tiny_dir, planted, tmp_path, teacher_url):
    pytest.importorskip("openai")
    from r2bench.pipeline import run_method
    from r2bench.r2rank.rl import run_rl
    from r2bench.r2rank.sft import run_sft
    from r2bench.r2rank.synthesize import synthesize

    scfg = SynthesizeConfig(base_url=teacher_url, model="teacher", max_instances=8, negatives_per_positive=1,
                            price_input_per_1m=1.0, price_output_per_1m=2.0)
    stats = synthesize(planted, scfg, tmp_path / "data", seed=0)
    assert stats["asked"] == 16 and stats["answered"] == 16
    assert stats["asked_positive"] == 8 and 0 < stats["kept"] <= 16
    assert stats["usage"]["prompt_tokens"] == 1600 and stats["usage"]["cost"] > 0
    df = pl.read_parquet(tmp_path / "data" / "sft_data.parquet")
    want = ["Recommend" if lab == 1 else "Not Recommend" for lab in df["label"]]
    assert df["kept"].to_list() == [d == w for d, w in zip(df["decision"].to_list(), want)]
    # a second run is answered from the cache (resumable): same stats, nothing sent
    again = synthesize(planted, scfg, tmp_path / "data", seed=0)
    assert again["kept"] == stats["kept"] and again["usage"]["sent"] == 0

    sft_final = run_sft(SFTConfig(backbone=str(tiny_dir), batch_size=4, lr=1e-3, checkpoint_every=2,
                                  device="cpu", dtype="float32"), tmp_path / "data", tmp_path / "sft", seed=0)
    sft_log = pl.read_csv(tmp_path / "sft" / "log.csv")
    assert sft_log.height >= 2 and sft_log["loss"].is_finite().all()
    rl_final = run_rl(RLConfig(backbone=str(sft_final), variant="sft+rl", steps=2, instances_per_step=1,
                               ranking_samples=2, max_reasoning_tokens=4, checkpoint_every=0, eval_instances=0,
                               device="cpu", dtype="float32"), planted, tmp_path / "rl", seed=0)
    run = run_method("r2rank", planted, split="test", limit=4, out=tmp_path / "runs",
                     overrides={"backbone": str(rl_final), "max_reasoning_tokens": "4", "device": "cpu"})
    info = json.loads((run / "run.json").read_text())
    assert info["method"] == "r2rank"
    assert pl.read_parquet(run / "metrics.parquet").height == 4


def test_cli_synthesize_from_a_responses_file(planted, tmp_path, capsys):
    """`r2bench r2rank synthesize` with cached teacher answers (no server); unknown keys are user errors."""
    from r2bench.cli import main
    from r2bench.r2rank.synthesize import select_pairs

    pairs = select_pairs(planted, SynthesizeConfig(max_instances=3), seed=0)
    lines = [json.dumps({"instance_id": p["instance_id"], "item_id": p["item_id"],
                         "text": "ok <answer>Recommend</answer>"}) for p in pairs]
    (tmp_path / "answers.jsonl").write_text("\n".join(lines[:-1]) + "\n")  # the last one is missing
    rc = main(["r2rank", "synthesize", "--dataset", str(planted.path), "--out", str(tmp_path / "d"),
               "--set", f"responses_file={tmp_path / 'answers.jsonl'}", "--set", "max_instances=3"])
    assert rc == 0
    stats = json.loads((tmp_path / "d" / "stats.json").read_text())
    assert stats["asked"] == 6 and stats["answered"] == 5
    assert stats["kept_positive"] == 3 and stats["kept_negative"] == 0  # "Recommend" is right for positives only
    assert "kept 3" in capsys.readouterr().out
    assert main(["r2rank", "rl", "--dataset", str(planted.path), "--out", str(tmp_path / "x"),
                 "--set", "stepz=1"]) == 2


def test_policy_forward_with_shared_prefix_equals_full_rows(tiny_dir, planted):
    """The RL forward encodes the instance's common prompt prefix once: same log-probs, states, gradients."""
    from r2bench.lm.policy import Policy

    tr, _ = _trainer(tiny_dir, planted, max_reasoning_tokens=4)
    row = planted.split("train").to_dicts()[0]
    _, ro, _ = tr.scores_of(row, greedy=False, generator=torch.Generator().manual_seed(2))
    assert ro.prefix_len > ro.prompt_width // 2  # the user context is shared
    results = []
    for shared in (True, False):
        tr.model.zero_grad(set_to_none=True)
        out = Policy(tr.model)(ro, shared_prefix=shared)
        (out.logprobs.sum() + out.hidden.square().sum()).backward()
        results.append((out.logprobs.detach(), out.hidden.detach(), [p.grad.clone() for p in tr.model.parameters() if p.grad is not None]))
    (lp_a, h_a, g_a), (lp_b, h_b, g_b) = results
    assert torch.allclose(lp_a, lp_b, atol=1e-5) and torch.allclose(h_a, h_b, atol=1e-5)
    assert all(float((a - b).norm()) <= 1e-4 * float(b.norm()) + 1e-7 for a, b in zip(g_a, g_b))
    assert len(g_a) == len(g_b) > 0


def test_mlp_only_rollout_reads_the_decision_on_the_generation_cache(tiny_dir, planted):
    """mlp-only samples and reads the states on the generation cache: the same states as the full forward."""
    from r2bench.lm.policy import Policy

    tr, _ = _trainer(tiny_dir, planted, variant="mlp-only", max_reasoning_tokens=5)
    row = planted.split("train").to_dicts()[1]
    _, ro, hidden = tr.scores_of(row, greedy=False, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        full = Policy(tr.model)(ro, logprobs=False, shared_prefix=False).hidden
    assert hidden.shape == full.shape and torch.allclose(hidden, full, atol=1e-5)
    assert ro.response_mask.sum() > 0


def test_old_logprobs_in_micro_batches_equal_one_pass(tiny_dir, planted):
    """micro_batch also splits the rollout's no-gradient pass (memory): the same old log-probs and states."""
    tr, _ = _trainer(tiny_dir, planted, max_reasoning_tokens=3)
    row = planted.split("train").to_dicts()[2]
    _, ro, _ = tr.scores_of(row, greedy=False, generator=torch.Generator().manual_seed(7))
    module = tr.engine.unwrap(tr.policy)
    with torch.no_grad():
        full_lp, full_h = tr._old_logprobs(module, ro)
        tr.cfg.micro_batch = 3
        lp, h = tr._old_logprobs(module, ro)
    assert ro.decision_row.max() >= ro.n_candidates  # extra decision rows are part of the chunks
    assert torch.allclose(lp, full_lp, atol=1e-5) and torch.allclose(h, full_h, atol=1e-5)
    assert float(lp.abs().sum()) > 0
