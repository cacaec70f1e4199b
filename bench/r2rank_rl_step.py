"""Cost of one R2Rank RL step (Algorithm 1): seconds per step and peak memory.

Builds a synthetic benchmark with full-length histories (20 items, so the prompts
are as long as on a real dataset), loads the backbone for training, and times
``--steps`` RL steps of ``--batch`` instances x ``--k`` candidates with reasoning of
up to ``--reasoning`` tokens (the tiny models' reasonings never stop early, so every
candidate generates the full budget). Prints per step: total seconds, the rollout
share (sampling + old log-probs) against the optimisation share (``--epochs`` PPO
epochs of forward + backward), generated tokens, and the process's peak memory.

``--dataset movielens-100k`` (or any prepared benchmark name/folder) times real
prompts instead (about 900 tokens per ML-100K prompt). ``--compare-shared-prefix``
runs the same steps twice, in two fresh processes (peak memory is per process):
with the instance's common prompt prefix encoded once per forward pass (the
default) and with every row run in full, and prints both and their ratio.

    python bench/r2rank_rl_step.py --backbone smollm2-135m --k 20 --reasoning 16 --batch 1 --steps 2
    python bench/r2rank_rl_step.py --dataset movielens-100k --steps 3 --compare-shared-prefix
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="smollm2-135m")
    ap.add_argument("--k", type=int, default=20, help="candidates per instance")
    ap.add_argument("--reasoning", type=int, default=16, help="max reasoning tokens per candidate")
    ap.add_argument("--batch", type=int, default=1, help="instances per RL step")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2, help="PPO epochs per rollout batch")
    ap.add_argument("--variant", default="rl-only", choices=["rl-only", "mlp-only", "no-cot"])
    ap.add_argument("--lora-r", type=int, default=0)
    ap.add_argument("--micro-batch", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--dataset", default=None,
                    help="a prepared benchmark (name or folder) whose train instances to use; default: synthetic")
    ap.add_argument("--shared-prefix", choices=["on", "off"], default="on",
                    help="encode the common prompt prefix once per forward pass (on, the default) or not")
    ap.add_argument("--compare-shared-prefix", action="store_true",
                    help="run with --shared-prefix on and off in two fresh processes and print the ratio")
    args = ap.parse_args()
    if args.compare_shared_prefix:
        compare_shared_prefix(args)
        return

    import torch

    from r2bench.data.benchmark import load_benchmark
    from r2bench.data.synthetic import make_synthetic_benchmark
    from r2bench.r2rank.rl import RLTrainer, fresh_head
    from r2bench.r2rank.train_config import RLConfig
    from r2bench.lm.backbones import load_policy

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dataset:
        bench = load_benchmark(args.dataset)
    else:
        tmp = tempfile.mkdtemp(prefix="r2rank-rl-bench-")
        bench = load_benchmark(make_synthetic_benchmark(tmp, n_users=40, n_items=120, seed=0, min_len=22, max_len=25,
                                                        n_candidates=args.k))
    cfg = RLConfig(backbone=args.backbone, variant=args.variant, instances_per_step=args.batch, ranking_samples=4,
                   max_reasoning_tokens=args.reasoning, ppo_epochs=args.epochs, lora_r=args.lora_r,
                   micro_batch=args.micro_batch, shared_prefix=args.shared_prefix == "on")
    t0 = time.perf_counter()
    model, tok = load_policy(cfg.backbone, cfg, device=cfg.device, dtype=cfg.dtype)
    load_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    head = fresh_head(model.config.get_text_config().hidden_size, cfg.head_hidden,
                      model.get_output_embeddings().weight.device)
    tr = RLTrainer(cfg, model, tok, head, bench, seed=0)
    import numpy as np

    train = bench.split("train").to_dicts()  # a seeded sample, as training draws them
    rows = [train[i] for i in np.random.default_rng(0).permutation(len(train))[: args.steps * args.batch]]
    from r2bench.lm.kvcache import common_prefix_len

    prompts = [tr._prompt_ids(r) for r in rows]
    plen = statistics.mean(statistics.mean(map(len, ps)) for ps in prompts)
    shared = statistics.mean(common_prefix_len(ps) for ps in prompts)
    dev = str(model.get_output_embeddings().weight.device)
    print(f"backbone={args.backbone} params={n_params / 1e6:.1f}M trainable={n_train / 1e6:.1f}M device={dev} "
          f"threads={torch.get_num_threads()} load={load_s:.1f}s mean_prompt_tokens={plen:.0f} mean_shared_prefix_tokens={shared:.0f}")
    print(f"variant={args.variant} K={bench.k} reasoning<={args.reasoning} batch={args.batch} "
          f"ppo_epochs={args.epochs} lora_r={args.lora_r} micro_batch={args.micro_batch} "
          f"shared_prefix={args.shared_prefix} data={args.dataset or 'synthetic'}")
    times = []
    for s in range(args.steps):
        log = tr.train_step(rows[s * args.batch:(s + 1) * args.batch])
        times.append(log.step_s)
        print(f"step {s + 1}: {log.step_s:.1f} s (rollout {log.rollout_s:.1f} s, optimisation "
              f"{log.step_s - log.rollout_s:.1f} s), generated {log.tokens} tokens "
              f"({log.tokens / max(log.rollout_s, 1e-9):.1f} tok/s in the rollout), peak memory "
              f"{log.peak_mem_mb:.0f} MB, reward {log.reward:.3f}, clip {log.clip_fraction:.2f}", flush=True)
    med = statistics.median(times)
    print(f"median seconds per RL step: {med:.1f} ({med / (args.batch * bench.k):.2f} s per candidate); "
          f"one epoch over 1000 train instances would take ~{med / args.batch * 1000 / 3600:.1f} h on this machine")


def compare_shared_prefix(args) -> None:
    """The same steps with the shared prefix on and off, each in a fresh process; prints the ratios."""
    argv = [a for a in sys.argv[1:] if a != "--compare-shared-prefix"]
    found = {}
    for mode in ("on", "off"):
        cmd = [sys.executable, __file__, *argv, "--shared-prefix", mode]
        print(f"$ {' '.join(cmd[1:])}", flush=True)
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        print(out, end="", flush=True)
        med = float(re.search(r"median seconds per RL step: ([0-9.]+)", out).group(1))
        mem = max(float(m) for m in re.findall(r"peak memory ([0-9.]+) MB", out))
        found[mode] = (med, mem)
    (t_on, m_on), (t_off, m_off) = found["on"], found["off"]
    print(f"shared prefix on : median {t_on:.1f} s per step, peak {m_on:.0f} MB")
    print(f"shared prefix off: median {t_off:.1f} s per step, peak {m_off:.0f} MB")
    print(f"speed-up with the shared prefix: {t_off / t_on:.2f}x (median seconds per step, off / on); "
          f"peak memory off / on: {m_off / m_on:.2f}")


if __name__ == "__main__":
    main()
