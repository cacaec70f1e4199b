"""R2Rank inference speed: shared-prefix KV cache against the per-candidate path.

    python bench/r2rank_inference.py [--backbone smollm2-135m] [--dataset movielens-100k]
        [--instances 1] [--max-new-tokens 8] [--threads 1] [--skip-alone]

On the same test instances (20 candidates each, the full Figure 2 prompt with a
20-item history), scores every candidate three ways:

1. shared: the user-context prefix encoded once, its KV cache reused for the 20
   continuations (``shared_prefix=True``, what ``r2bench run --method r2rank`` does);
2. naive batch: the 20 full prompts left-padded into one batch, no sharing;
3. alone: each candidate's full prompt on its own (batch 1); skip with ``--skip-alone``.

Checks that all paths give the same greedy tokens and scores (within 1e-3), and
prints candidates per second, the ratios, and the peak RSS growth of each path
(sampled every 20 ms). Needs a prepared dataset (``r2bench prepare movielens-100k``).
"""

from __future__ import annotations

import argparse
import threading
import time

import psutil


class PeakRSS:
    """Peak resident memory above the level at entry, sampled in a background thread."""

    def __enter__(self):
        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="smollm2-135m")
    ap.add_argument("--dataset", default="movielens-100k")
    ap.add_argument("--instances", type=int, default=1)
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core box)")
    ap.add_argument("--skip-alone", action="store_true", help="skip the one-candidate-at-a-time path")
    args = ap.parse_args()

    import torch

    from r2bench.data.benchmark import load_benchmark
    from r2bench.lm.backbones import load_backbone
    from r2bench.lm.generation import encode_prompts
    from r2bench.lm.kvcache import common_prefix_len
    from r2bench.r2rank.inference import score_prompts
    from r2bench.lm.prompts import instance_prompt

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    bench = load_benchmark(args.dataset)
    model, tok = load_backbone(args.backbone)
    records = bench.item_records()
    rows = list(bench.split("test").head(args.instances).iter_rows(named=True))
    prompts = [encode_prompts(tok, instance_prompt(r, records, bench.profile_fields).all_messages()) for r in rows]
    n_cand = sum(len(p) for p in prompts)
    lens = [len(x) for p in prompts for x in p]
    shared_len = [common_prefix_len(p) for p in prompts]
    print(f"backbone={args.backbone} dataset={bench.name} instances={len(rows)} candidates={n_cand} "
          f"max_new_tokens={args.max_new_tokens} threads={torch.get_num_threads()}")
    print(f"prompt tokens: mean {sum(lens) / len(lens):.0f}, shared prefix mean {sum(shared_len) / len(shared_len):.0f}")

    paths = {
        "shared": lambda ids: score_prompts(model, tok, ids, max_new_tokens=args.max_new_tokens),
        "naive batch": lambda ids: score_prompts(model, tok, ids, max_new_tokens=args.max_new_tokens,
                                                 shared_prefix=False),
    }
    if not args.skip_alone:
        paths["alone"] = lambda ids: [score_prompts(model, tok, [x], max_new_tokens=args.max_new_tokens,
                                                    shared_prefix=False)[0] for x in ids]
    results, secs, mem = {}, {}, {}
    for name, fn in paths.items():
        t0 = time.perf_counter()
        with PeakRSS() as peak:
            results[name] = [r for ids in prompts for r in fn(ids)]
        secs[name] = time.perf_counter() - t0
        mem[name] = peak.mib
        print(f"{name:12s} {secs[name]:8.1f} s  {n_cand / secs[name]:6.3f} candidates/s  peak RSS +{mem[name]:.0f} MiB",
              flush=True)

    ref = results["shared"]
    for name, res in results.items():
        same_tokens = all(a.reasoning.token_ids == b.reasoning.token_ids for a, b in zip(ref, res))
        max_diff = max(abs(a.score - b.score) for a, b in zip(ref, res))
        print(f"{name:12s} same greedy tokens as shared: {same_tokens}; max |score diff| {max_diff:.2e}")
        assert same_tokens and max_diff < 1e-3, f"{name} disagrees with the shared-prefix path"
    for name in results:
        if name != "shared":
            print(f"speed-up shared vs {name}: {secs[name] / secs['shared']:.2f}x")
    unfinished = sum(not r.reasoning.finished for r in ref)
    print(f"unfinished reasonings (no </answer> within {args.max_new_tokens} tokens): {unfinished}/{len(ref)}")


if __name__ == "__main__":
    main()
