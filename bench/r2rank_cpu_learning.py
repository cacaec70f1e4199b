"""R2Rank learning on MovieLens-100K at CPU scale (issue 14, item 3), end to end, with wall and CPU times.

Runs the README's commands one after the other (each a subprocess with 1 torch thread),
then prints every step's wall and CPU seconds, the test-split table with paired Wilcoxon
p-values against the zero-shot model and against popularity, the Figure 2 format-following
shares at 64 and 256 reasoning tokens, and draws the head runs' learning curves.

    python bench/r2rank_cpu_learning.py --out /work/runs-learn [--only STEP,...] [--skip STEP,...]

Each finished step leaves ``<out>/steps/<step>.json`` (command, wall, CPU, exit status, run
folder) and is skipped when the script runs again, so a long session can be resumed; the
printed times are always the ones measured when the step ran. ``--redo STEP`` runs a step again.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

DATASET = "movielens-100k"
R2 = ["--set", "threads=1"]


def steps(out: Path) -> list[tuple[str, list[str]]]:
    """(name, argv) of every step; ``{url}`` is the local llama.cpp server's base URL."""
    runs = str(out / "runs")
    feat = ["--dataset", DATASET, "--seed", "0", "--set", "no_cot=true", "--set", "train_instances=last-per-user",
            "--set", "shard_size=16", "--set", "threads=1"]
    head = ["r2bench", "r2rank", "head", *feat, "--set", f"features_dir={out}/mlp-nocot/features"]
    run = ["r2bench", "run", "--dataset", DATASET, "--out", runs]
    r2 = [*run, "--method", "r2rank", "--set", "no_cot=true", *R2]
    return [
        ("prepare", ["r2bench", "prepare", DATASET]),
        ("zero-shot", [*r2, "--set", "head=none", "--label", "r2rank-zero-shot-no-cot"]),
        ("features", ["r2bench", "r2rank", "features", *feat, "--out", f"{out}/mlp-nocot"]),
        ("head-reinforce", [*head, "--out", f"{out}/mlp-nocot", "--set", "objective=reinforce"]),
        ("head-reinforce-loo", [*head, "--out", f"{out}/mlp-nocot-loo", "--set", "objective=reinforce",
                                "--set", "baseline=loo", "--set", "ranking_samples=8"]),
        ("head-probe", [*head, "--out", f"{out}/probe-nocot", "--set", "objective=listwise-ce"]),
        ("mlp-only", [*r2, "--set", f"head={out}/mlp-nocot/final/head.safetensors", "--label", "r2rank-mlp-only-no-cot"]),
        ("probe", [*r2, "--set", f"head={out}/probe-nocot/final/head.safetensors", "--label", "r2rank-probe-no-cot"]),
        ("mlp-only-loo", [*r2, "--set", f"head={out}/mlp-nocot-loo/final/head.safetensors",
                          "--label", "r2rank-mlp-only-loo-no-cot"]),
        ("popularity", [*run, "--method", "popularity", "--label", "popularity"]),
        ("sasrec", [*run, "--method", "sasrec", "--label", "sasrec"]),
        ("tallrec", [*run, "--method", "tallrec", "--seed", "0", "--set", "max_instances=240",
                     "--set", "negatives_per_positive=4", "--set", "batch_size=10", "--set", f"save_to={out}/tallrec",
                     "--label", "tallrec"]),
        # Figure 2 format following, greedy, on the first 20 test instances (400 reasonings each)
        ("format-64", [*run, "--method", "r2rank", "--limit", "20", "--set", "max_reasoning_tokens=64",
                       "--set", "head=none", *R2, "--label", "r2rank-fig2-64"]),
        ("format-256", [*run, "--method", "r2rank", "--limit", "20", "--set", "max_reasoning_tokens=256",
                        "--set", "head=none", *R2, "--label", "r2rank-fig2-256"]),
        # listwise: 95 requests; pointwise would send 1,900 and took 10-15 s each through llama.cpp on this box
        ("llm-listwise", [*run, "--method", "llm-listwise", "--set", "base_url={url}", "--set", "model=smollm2",
                          "--set", "max_tokens=160", "--set", "concurrency=1", "--set", "timeout_s=1800",
                          "--label", "llm-listwise-smollm2"]),
    ]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_step(name: str, argv: list[str], out: Path) -> dict:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    server = None
    if any("{url}" in a for a in argv):
        from r2bench.llm.local_server import LocalServer

        server = LocalServer(n_threads=1, log_path=logs / f"{name}-server.log").start()
        argv = [a.replace("{url}", server.base_url) for a in argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "R2BENCH_PROGRESS": "0"}
    started, t0, c0 = datetime.now(timezone.utc), time.perf_counter(), _cpu()
    print(f"[{started:%H:%M:%S}] {name}: {' '.join(argv)}", flush=True)
    try:
        with open(logs / f"{name}.log", "w") as f:
            proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=f, text=True, env=env)
            f.write(proc.stdout)
            if server is not None and server.proc.poll() is not None:
                # the run itself exits 0 with the failed requests recorded; a step whose server died is a failure
                f.write(f"\nthe local server died during the step: {server.death_message()}\n")
                proc.returncode = proc.returncode or 1
    finally:
        if server is not None:
            server.stop()
    lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
    run_dir = lines[-1] if lines and (Path(lines[-1]) / "run.json").is_file() else None
    rec = {"step": name, "command": " ".join(argv), "rc": proc.returncode, "started": started.isoformat(),
           "wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(_cpu() - c0, 1), "run": run_dir,
           "stdout_tail": lines[-3:]}
    (out / "steps").mkdir(exist_ok=True)
    if proc.returncode == 0:
        (out / "steps" / f"{name}.json").write_text(json.dumps(rec, indent=2))
    else:  # a failed or killed attempt: kept, and its time added to the step's when it is resumed
        n = len(list((out / "steps").glob(f"{name}.failed-*.json")))
        (out / "steps" / f"{name}.failed-{n}.json").write_text(json.dumps(rec, indent=2))
    print(f"  -> rc {proc.returncode}, wall {rec['wall_s']:.0f} s, CPU {rec['cpu_s']:.0f} s", flush=True)
    return rec


def _metrics(run: str):
    import polars as pl

    return pl.read_parquet(Path(run) / "metrics.parquet").sort("instance_id")


def summarize(out: Path, plot: Path | None) -> None:
    import numpy as np

    from r2bench.eval.significance import wilcoxon_p

    recs = {p.stem: json.loads(p.read_text()) for p in sorted((out / "steps").glob("*.json")) if "." not in p.stem}
    print("\nstep                  wall (min)   CPU (min)   started (UTC)         attempts")
    for name, _ in steps(out):
        if name in recs:
            tries = [json.loads(p.read_text()) for p in sorted((out / "steps").glob(f"{name}.failed-*.json"))]
            r = recs[name]
            wall, cpu = (sum(x[k] for x in [*tries, r]) for k in ("wall_s", "cpu_s"))
            print(f"{name:20s} {wall / 60:10.1f} {cpu / 60:11.1f}   {(tries or [r])[0]['started'][:19]}   "
                  f"{len(tries) + 1}{' (rc ' + ', '.join(str(t['rc']) for t in tries) + ' before)' if tries else ''}")
    runs = {n: r["run"] for n, r in recs.items() if r.get("run") and not n.startswith("format-")}
    if runs:
        ref = {k: _metrics(runs[k]) for k in ("zero-shot", "popularity") if k in runs}
        print("\nrun (test split)      n    NDCG@1  NDCG@5  NDCG@10   p vs zero-shot   p vs popularity")
        for name, run in runs.items():
            m = _metrics(run)
            ps = []
            for k in ("zero-shot", "popularity"):
                if k in ref and k != name and ref[k]["instance_id"].to_list() == m["instance_id"].to_list():
                    ps.append(f"{wilcoxon_p(m['ndcg@10'].to_numpy(), ref[k]['ndcg@10'].to_numpy()):.2g}")
                else:
                    ps.append("-")
            print(f"{name:20s} {m.height:4d}  {m['ndcg@1'].mean():.4f}  {m['ndcg@5'].mean():.4f}  "
                  f"{m['ndcg@10'].mean():.4f}   {ps[0]:>14s}   {ps[1]:>15s}")
    heads = {n: out / d / "final" / "r2rank_train.json" for n, d in
             (("head-reinforce", "mlp-nocot"), ("head-reinforce-loo", "mlp-nocot-loo"), ("head-probe", "probe-nocot"))}
    for name, path in heads.items():
        if path.is_file():
            meta = json.loads(path.read_text())
            print(f"{name}: best val NDCG@10 {meta['best_val_ndcg@10']:.4f} at epoch {meta['best_epoch']} of "
                  f"{meta['epochs_run']} ({meta['train_instances']} train, {meta['eval_instances']} val instances; "
                  f"head training {meta['head_training_s']:.0f} s)")
    import polars as pl

    for name, budget in (("format-64", 64), ("format-256", 256)):
        if name not in recs:
            continue
        rat = pl.read_parquet(Path(recs[name]["run"]) / "rationales.parquet")
        n = rat.height
        fin = rat["finished"]
        within = {k: int((fin & (rat["n_tokens"] <= k)).sum()) for k in (64, budget)}
        eos = int(((~fin) & (rat["n_tokens"] < budget)).sum())
        print(f"\nFigure 2 format, greedy, up to {budget} tokens: {rat['instance_id'].n_unique()} test instances x 20 "
              f"candidates = {n} reasonings; reach </answer> within 64 tokens {within[64]} ({within[64] / n:.1%})"
              + (f", within {budget} tokens {within[budget]} ({within[budget] / n:.1%})" if budget != 64 else "")
              + f"; stopped at EOS without it {eos} ({eos / n:.1%}); cut at the budget {n - int(fin.sum()) - eos}; "
              f"median length {float(np.median(rat['n_tokens'].to_numpy())):.0f} tokens")
    logs = {lab: out / d / "log.csv" for lab, d in (("REINFORCE (paper)", "mlp-nocot"), ("REINFORCE, loo", "mlp-nocot-loo"),
                                                    ("listwise-CE probe", "probe-nocot")) if (out / d / "log.csv").is_file()}
    if plot and logs:
        from r2bench.eval.metrics import random_expectation
        from r2bench.r2rank.curves import plot_head_logs

        plot_head_logs(logs, plot, chance=random_expectation("ndcg@10", 20),
                       title="R2Rank mlp-only, no-cot, SmolLM2-135M frozen: head trained on cached decision states "
                             "(ML-100K, 754 train users, 94 val users)")
        print(f"wrote {plot}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for runs, caches, logs and step records")
    ap.add_argument("--only", default="", help="comma-separated steps to run (default: all)")
    ap.add_argument("--skip", default="", help="comma-separated steps not to run")
    ap.add_argument("--redo", default="", help="comma-separated steps to run again even if recorded")
    ap.add_argument("--plot", default="docs/img/r2rank-cpu-learning-ml100k.png", help="learning-curve PNG")
    ap.add_argument("--summary-only", action="store_true", help="print the tables from the recorded steps")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    only = {s for s in args.only.split(",") if s}
    skip = {s for s in args.skip.split(",") if s}
    redo = {s for s in args.redo.split(",") if s}
    if not args.summary_only:
        for name, argv in steps(out):
            if (only and name not in only) or name in skip:
                continue
            if (out / "steps" / f"{name}.json").is_file() and name not in redo:
                print(f"{name}: recorded, skipped")
                continue
            if run_step(name, argv, out)["rc"] != 0:
                print(f"{name} failed; see {out / 'logs' / (name + '.log')}", file=sys.stderr)
                return 1
    summarize(out, Path(args.plot) if args.plot else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
