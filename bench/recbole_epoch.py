"""Seconds per training epoch of the RecBole baselines: r2bench's defaults vs RecBole's stock ones.

For each model, trains one epoch on a prepared benchmark (default: movielens-100k,
prepared on first use) in the same process, one setting after the other:

- ``stock``: RecBole's stock settings (autograd anomaly mode on, as importing RecBole
  leaves it; ``MAX_ITEM_LIST_LENGTH`` 50; batch 2048; the model's stock dropout and
  learning rate);
- ``anomaly-off``: stock, with anomaly mode switched off (the first of the two fixes);
- ``ours``: r2bench's defaults (``baselines/configs/*.yaml``: anomaly off, 20 items).

The time is the training pass alone (RecBole's ``_train_epoch``), not data loading or
the val evaluation, as wall seconds and as CPU seconds of the process (the better
figure on a shared machine, where wall time mostly measures the other tenants). Prints
one line per (model, setting) and the stock/ours ratios.

    python bench/recbole_epoch.py [--dataset movielens-100k] [--models sasrec,bert4rec,lightgcn]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("R2BENCH_PROGRESS", "0")

STOCK = {
    "sasrec": {"anomaly_mode": True, "max_seq_length": 50, "train_batch_size": 2048,
               "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5},
    # BERT4Rec's internal length is max_seq_length + 1: 49 gives RecBole's stock 50
    "bert4rec": {"anomaly_mode": True, "max_seq_length": 49, "train_batch_size": 2048},
    "lightgcn": {"anomaly_mode": True, "learning_rate": 0.001, "reg_weight": 1e-5},
}


def load(dataset: str):
    from r2bench.data.benchmark import load_benchmark
    from r2bench.errors import R2BenchError

    try:
        return load_benchmark(dataset)
    except R2BenchError:
        from r2bench.data.prepare import prepare

        return prepare(dataset)


def one_epoch(name: str, bench, overrides: dict, threads: int) -> tuple[float, float, int]:
    from r2bench.config import build_config
    from r2bench.methods import method_class

    cls = method_class(name)
    method = cls(build_config(cls.Config, {**overrides, "epochs": 1, "threads": threads}), seed=0)
    method.fit(bench)
    info = method.info()
    return float(info["epoch_train_seconds"][0]), float(info["epoch_train_cpu_seconds"][0]), int(info["train_examples"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="movielens-100k")
    ap.add_argument("--models", default="sasrec,bert4rec,lightgcn")
    ap.add_argument("--settings", default="stock,ours", help="any of stock, anomaly-off, ours")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for every setting (default 1: comparable on a shared machine)")
    args = ap.parse_args()

    import torch

    bench = load(args.dataset)
    print(f"dataset: {bench.describe()}  train instances: {bench.split('train').height}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} torch thread(s), "
          f"torch {torch.__version__}, "
          f"load average at start {os.getloadavg()[0]:.1f}")
    settings = args.settings.split(",")
    for name in args.models.split(","):
        secs, cpu = {}, {}
        for setting in settings:
            over = dict(STOCK[name])
            if setting == "anomaly-off":
                over["anomaly_mode"] = False
            elif setting == "ours":
                over = {}
            t0 = time.perf_counter()
            secs[setting], cpu[setting], n = one_epoch(name, bench, over, args.threads)
            print(f"{name:9s} {setting:12s} {secs[setting]:8.1f} s/epoch wall, {cpu[setting]:8.1f} s CPU  ({n} examples; "
                  f"fit incl. data set-up {time.perf_counter() - t0:.1f} s; load {os.getloadavg()[0]:.1f})", flush=True)
        if "stock" in secs and "ours" in secs:
            print(f"{name:9s} stock / ours = {secs['stock'] / secs['ours']:.2f}x wall, {cpu['stock'] / cpu['ours']:.2f}x CPU"
                  + (f"; stock / anomaly-off = {cpu['stock'] / cpu['anomaly-off']:.2f}x CPU" if "anomaly-off" in cpu else ""))


if __name__ == "__main__":
    main()
