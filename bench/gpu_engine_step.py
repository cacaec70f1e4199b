"""One step of every trainer on the accelerate engine, on a GPU (``bench/gpu_check.sh`` runs it).

    accelerate launch --num_processes 1 --mixed_precision bf16 bench/gpu_engine_step.py
    accelerate launch --config_file configs/accelerate/fsdp2.yaml --num_processes 1 bench/gpu_engine_step.py --dtype float32
    accelerate launch --config_file configs/accelerate/deepspeed-zero2.yaml --num_processes 1 \\
        bench/gpu_engine_step.py --dtype float32

On a generated benchmark and a tiny random Llama (a byte-level BPE tokenizer trained here
on the benchmark's prompts; nothing is downloaded), through the same code as ``r2bench
r2rank sft|rl`` and TALLRec's ``fit``:

- ``sft``: one SFT step (``run_sft``, a checkpoint written);
- ``rl-<variant>``: one RL step of each variant (``run_rl``: rl-only, sft+rl with LoRA,
  mlp-only, no-cot; a checkpoint and a greedy evaluation each);
- ``rl-resume``: rl-only resumed from its step-1 checkpoint for a second step (the engine's
  ``load_state`` where it shards the optimizer state);
- ``tallrec``: one TALLRec optimizer step (LoRA).

Each prints ``engine=<NO|MULTI_GPU|FSDP|DEEPSPEED> trainer=<name> ok|FAILED`` with its loss,
seconds and peak CUDA memory; the exit code is 0 only when every trainer took its step with
finite numbers and changed its weights.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def tiny_backbone(bench, out: Path) -> Path:
    """A 2-layer random Llama (hidden 64) and a BPE tokenizer trained on the benchmark's prompts, saved to ``out``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from r2bench.lm.prompts import instance_prompt

    recs, texts = bench.item_records(), []
    for r in bench.instances.head(20).to_dicts():
        texts += [m[0]["content"] for m in instance_prompt(r, recs, bench.profile_fields).all_messages()[:3]]
        texts += [instance_prompt(r, recs, bench.profile_fields, no_cot=True).messages(0)[0]["content"]]
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(texts + ["<answer>Recommend</answer> <answer>Not Recommend</answer> Yes No"] * 5,
                           trainers.BpeTrainer(vocab_size=1000, special_tokens=["<pad>", "<|im_start|>", "<|im_end|>"],
                                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                               show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<|im_end|>")
    tok.chat_template = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
                         "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=4096, pad_token_id=tok.pad_token_id,
                                         eos_token_id=tok.eos_token_id, bos_token_id=None))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update({f"{f.name}:{k}": v.float() for k, v in load_file(str(f)).items()})
    return out


def _changed(a: dict, b: dict) -> bool:
    return any(k in b and a[k].shape == b[k].shape and not bool((a[k] == b[k]).all()) for k in a)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--dtype", default="auto", help="the trainers' dtype (auto = bf16 on CUDA)")
    ap.add_argument("--trainers", default="sft,rl,tallrec")
    args = ap.parse_args()
    os.environ.setdefault("R2BENCH_PROGRESS", "0")
    import numpy as np
    import polars as pl
    import torch

    from baselines.tallrec import TALLRecConfig, TALLRecMethod
    from r2bench.data.benchmark import load_benchmark
    from r2bench.data.synthetic import make_synthetic_benchmark
    from r2bench.lm.engine import Engine
    from r2bench.r2rank.rl import run_rl
    from r2bench.r2rank.sft import run_sft
    from r2bench.r2rank.synthesize import select_pairs
    from r2bench.r2rank.train_config import RLConfig, SFTConfig, SynthesizeConfig

    engine = Engine()
    root = Path(args.out or tempfile.mkdtemp(prefix="r2bench-gpu-engine-"))
    if engine.is_main:
        root.mkdir(parents=True, exist_ok=True)
        bench_dir = make_synthetic_benchmark(root / "bench", n_users=30, n_items=60, seed=0, min_len=8, max_len=12,
                                             n_candidates=10)
        tiny_backbone(load_benchmark(bench_dir), root / "model")
    engine.barrier()
    bench = load_benchmark(root / "bench")
    model_dir = str(root / "model")
    start = _weights(root / "model")
    results = []

    def run(name, fn):
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        try:
            loss, changed = fn()
            ok = bool(changed) and math.isfinite(loss)
            why = "" if ok else ("weights unchanged" if not changed else f"loss {loss}")
        except Exception:  # report and go on with the next trainer
            ok, loss, why = False, float("nan"), traceback.format_exc(limit=6)
        peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
        results.append(ok)
        if engine.is_main:
            print(f"engine={engine.kind} trainer={name} {'ok' if ok else 'FAILED'} loss={loss:.4f} "
                  f"s={time.perf_counter() - t0:.1f} peak_cuda_mb={peak:.0f}" + (f"\n{why}" if why else ""), flush=True)

    trainers = args.trainers.split(",")
    if "sft" in trainers:
        def sft():
            data = root / "sft-data"
            if engine.is_main:
                data.mkdir(exist_ok=True)
                pairs = select_pairs(bench, SynthesizeConfig(max_instances=4), seed=0)
                pl.DataFrame([{"instance_id": p["instance_id"], "user_id": p["user_id"], "item_id": p["item_id"],
                               "label": p["label"], "messages": json.dumps(p["messages"]), "kept": True,
                               "response": "<answer>" + ("Recommend" if p["label"] else "Not Recommend") + "</answer>"}
                              for p in pairs]).write_parquet(data / "sft_data.parquet")
            engine.barrier()
            cfg = SFTConfig(backbone=model_dir, batch_size=8, lr=1e-3, checkpoint_every=1, dtype=args.dtype)
            final = run_sft(cfg, data, root / "sft", seed=0, engine=engine)
            loss = float(pl.read_csv(root / "sft" / "log.csv")["loss"][-1]) if engine.is_main else 0.0
            return loss, (not engine.is_main) or _changed(start, _weights(final))
        run("sft", sft)
    if "rl" in trainers:
        for variant, extra in (("rl-only", {}), ("sft+rl", {"lora_r": 4, "lora_alpha": 8}), ("mlp-only", {}),
                               ("no-cot", {})):
            def rl(variant=variant, extra=extra):
                cfg = RLConfig(backbone=model_dir, variant=variant, steps=1, instances_per_step=2, ranking_samples=2,
                               max_reasoning_tokens=8, checkpoint_every=1, eval_every=1, eval_instances=2,
                               head_hidden=16, lr_policy=1e-3, lr_head=1e-2, dtype=args.dtype, **extra)
                final = run_rl(cfg, bench, root / f"rl-{variant}", seed=0, engine=engine)
                if not engine.is_main:
                    return 0.0, True
                log = pl.read_csv(root / f"rl-{variant}" / "log.csv")
                head = _weights(final)  # head.safetensors (+ the merged model unless mlp-only)
                moved = any(float(v.abs().max()) > 0 for k, v in head.items() if k.startswith("head.safetensors:net.4"))
                if variant != "mlp-only":
                    moved = moved and _changed(start, head)
                return float(log["pl_loss"][-1]) + float(log["ppo_loss"][-1]), moved
            run(f"rl-{variant}", rl)

        def resume():
            cfg = RLConfig(backbone=model_dir, variant="rl-only", steps=2, instances_per_step=2, ranking_samples=2,
                           max_reasoning_tokens=8, checkpoint_every=1, eval_instances=0, head_hidden=16,
                           lr_policy=1e-3, lr_head=1e-2, dtype=args.dtype)
            run_rl(cfg, bench, root / "rl-rl-only", seed=0, engine=engine)  # resumes at step 1
            if not engine.is_main:
                return 0.0, True
            log = pl.read_csv(root / "rl-rl-only" / "log.csv")
            return float(log["reward"][-1]), log["step"].to_list() == [1, 2]
        run("rl-resume", resume)
    if "tallrec" in trainers:
        def tallrec():
            m = TALLRecMethod(TALLRecConfig(backbone=model_dir, lora_r=4, max_instances=4, negatives_per_positive=1,
                                            epochs=1, batch_size=8, save_to=str(root / "tallrec"), dtype=args.dtype),
                              seed=0)
            m.set_engine(engine)
            m.fit(bench)
            lora_b = [p for n, p in m.model.named_parameters() if "lora_B" in n]
            scores = m.score(bench, bench.split("test").head(2))
            return float(m.info()["fit_loss_first"]), bool(lora_b) and any(float(p.detach().abs().max()) > 0 for p in lora_b) \
                and bool(np.isfinite(scores).all())
        run("tallrec", tallrec)
    engine.end()
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
