"""R2Rank reasons on MovieLens-100K on a CPU: teacher -> SFT -> RL with vLLM rollouts, each stage scored.

The paper's chain at CPU scale, every stage a step of r2bench's own commands with the
reasonings written by vLLM (``r2bench.llm.vllm_server.VLLMServer``, started for the steps
that need it on the model of that stage):

1. ``zero-shot``: R2Rank CoT on the base SmolLM2 (zero-shot decision margin, 64-token
   reasonings, full test split);
2. ``format-base``: Figure 2 format following of the base model, greedy and unconstrained,
   first 20 test instances, up to 256 tokens (the shares within 64 and 128 are read off the
   same greedy sequences: greedy decoding of a shorter budget is their prefix);
3. ``synthesize``: the offline teacher (the served base model constrained to the three-part
   response, several samples per pair, kept when the decision matches the label);
4. ``sft``: LoRA SFT on the kept responses (merged into ``<out>/sft/final``);
5. ``format-sft``: as 2, on the SFT model;
6. ``sft-only``: the SFT model's zero-shot margin on the full test split;
7. ``features-sft`` / ``head-sft`` / ``probe-sft`` / ``sft-head``: the scoring head's warm start: the
   SFT model's CoT decision states cached once (reasonings from vLLM, ``r2bench r2rank features
   --set generator=openai``), the head trained on them by REINFORCE under Plackett-Luce with
   held-out early stopping (``r2bench r2rank head``), a supervised listwise probe on the same
   states (how much ranking signal they hold), and that SFT model + head on the test split;
8. ``rl``: Algorithm 1 from the SFT model and that head (``variant=sft+rl``), a LoRA policy whose
   rollouts vLLM writes, the adapter published to the server after every step
   (``r2bench.llm.lora_sync``), held-out NDCG@10 logged;
9. ``sft-rl``: the RL output (policy + head) on the full test split;
10. ``rl-only`` / ``rl-only-test``: the same RL from the base model and a fresh head (when asked with --only).

    python bench/r2rank_cot_ml100k.py --out /work/cot [--only STEP,...] [--skip ...] [--redo ...]

Each finished step leaves ``<out>/steps/<step>.json`` (command, wall and CPU seconds, exit
status, run folder) and is skipped when the script runs again; a failed attempt is kept
and its time added. ``--adopt STEP=RUN_DIR`` records a run made by hand with the same
command. The summary prints wall/CPU per stage, the test table with paired Wilcoxon
p-values against zero-shot and against SFT-only, the format-following table and the
learning-curve picture of the RL stage.
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
TOKENS = 64  # reasoning budget of every scored run (the minimum)
BASE = "smollm2-135m"

# sized for a shared 2-core box (see the README's R2Rank training section for what each costs)
SYNTH = dict(max_instances=150, negatives_per_positive=1, samples_per_pair=2, temperature=0.9, max_tokens=400,
             section_chars="20-400", concurrency=16)
SFT = dict(lora_r=16, lora_alpha=32, lr=3e-4, epochs=1, batch_size=4, micro_batch=1, max_length=1536,
           checkpoint_every=10)
# the head's warm start: REINFORCE under Plackett-Luce on the SFT model's cached CoT decision states
# (reasonings from vLLM), early-stopped on held-out users; RL then trains the LLM and this head jointly
FEATURES = dict(max_reasoning_tokens=TOKENS, samples=1, temperature=1.0, train_instances="last-per-user:40",
                eval_instances=20, shard_size=8, threads=1, concurrency=20)
HEAD = dict(objective="reinforce", baseline="loo", ranking_samples=8, epochs=300, patience=30, lr_head=1e-3)
RL = dict(variant="sft+rl", lora_r=8, lora_alpha=16, steps=1, instances_per_step=2, ranking_samples=4,
          baseline="loo", max_reasoning_tokens=TOKENS, temperature=1.0, lr_policy=2e-5, lr_head=1e-3,
          ppo_epochs=2, eval_every=2, eval_instances=8, checkpoint_every=1, sync_every=1, concurrency=20,
          train_instances="last-per-user", micro_batch=5)


def _sets(d: dict) -> list[str]:
    out: list[str] = []
    for k, v in d.items():
        out += ["--set", f"{k}={v}"]
    return out


def steps(out: Path) -> list[tuple[str, str | None, list[str]]]:
    """(name, model the step's vLLM server serves or None, argv); ``{url}`` is that server's base URL."""
    runs = str(out / "runs")
    sft_final, rl_final = str(out / "sft" / "final"), str(out / "rl" / "final")
    served = ["--set", "generator=openai", "--set", "base_url={url}", "--set", "model=smollm2",
              "--set", "server_token_ids=true", "--set", "threads={threads}", "--set", "concurrency=20",
              "--set", "timeout_s=1800"]
    run = ["r2bench", "run", "--method", "r2rank", "--dataset", DATASET, "--out", runs, *served]
    fmt = [*run, "--limit", "20", "--set", "max_reasoning_tokens=256", "--set", "head=none"]
    head_dir = str(out / "head-sft")
    head_file = f"{head_dir}/final/head.safetensors"
    feat = ["--set", f"backbone={sft_final}", "--set", "generator=openai", "--set", "base_url={url}",
            "--set", "model=smollm2", "--set", "server_token_ids=true", "--set", f"features_dir={head_dir}/features",
            *_sets(FEATURES)]
    rl_only = {**RL, "variant": "rl-only"}  # from the base model and a fresh head
    # RL starts from the warm-started head when head-sft ran (skipped with --skip head-sft: a fresh head)
    warm_head = ["--set", f"head={head_file}"] if (out / "steps" / "head-sft.json").is_file() else []
    return [
        ("prepare", None, ["r2bench", "prepare", DATASET]),
        ("zero-shot", BASE, [*run, "--set", f"max_reasoning_tokens={TOKENS}", "--set", "head=none",
                             "--label", "r2rank-cot-zero-shot"]),
        ("format-base", BASE, [*fmt, "--label", "r2rank-cot-format-base"]),
        ("synthesize", BASE, ["r2bench", "r2rank", "synthesize", "--dataset", DATASET, "--out", str(out / "sft-data"),
                              "--set", "base_url={url}", "--set", "model=smollm2", "--set", "structured_output=regex",
                              *_sets(SYNTH)]),
        ("sft", None, ["r2bench", "r2rank", "sft", "--data", str(out / "sft-data"), "--out", str(out / "sft"),
                       "--set", f"backbone={BASE}", *_sets(SFT)]),
        ("format-sft", sft_final, [*fmt, "--set", f"backbone={sft_final}", "--label", "r2rank-cot-format-sft"]),
        ("sft-only", sft_final, [*run, "--set", f"backbone={sft_final}", "--set", f"max_reasoning_tokens={TOKENS}",
                                 "--set", "head=none", "--label", "r2rank-cot-sft"]),
        ("features-sft", sft_final, ["r2bench", "r2rank", "features", "--dataset", DATASET, "--out", head_dir,
                                     *feat]),
        ("head-sft", None, ["r2bench", "r2rank", "head", "--dataset", DATASET, "--out", head_dir, *feat,
                            *_sets(HEAD)]),
        ("probe-sft", None, ["r2bench", "r2rank", "head", "--dataset", DATASET, "--out", str(out / "probe-sft"), *feat,
                             *_sets({**HEAD, "objective": "listwise-ce"})]),
        ("sft-head", sft_final, [*run, "--set", f"backbone={sft_final}", "--set", f"max_reasoning_tokens={TOKENS}",
                                 "--set", f"head={head_file}", "--label", "r2rank-cot-sft-head"]),
        ("rl", sft_final, ["r2bench", "r2rank", "rl", "--dataset", DATASET, "--out", str(out / "rl"),
                           "--set", f"backbone={sft_final}", *warm_head, "--set", "generator=openai",
                           "--set", "base_url={url}", "--set", "model=smollm2", "--set", "server_token_ids=true",
                           *_sets(RL)]),
        ("sft-rl", rl_final, [*run, "--set", f"backbone={rl_final}", "--set", f"max_reasoning_tokens={TOKENS}",
                              "--set", "head=auto", "--label", "r2rank-cot-sft-rl"]),
        ("rl-only", BASE, ["r2bench", "r2rank", "rl", "--dataset", DATASET, "--out", str(out / "rl-only"),
                           "--set", f"backbone={BASE}", "--set", "generator=openai", "--set", "base_url={url}",
                           "--set", "model=smollm2", "--set", "server_token_ids=true", *_sets(rl_only)]),
        ("rl-only-test", str(out / "rl-only" / "final"),
         [*run, "--set", f"backbone={out / 'rl-only' / 'final'}", "--set", f"max_reasoning_tokens={TOKENS}",
          "--set", "head=auto", "--label", "r2rank-cot-rl-only"]),
    ]


OPTIONAL = {"rl-only", "rl-only-test"}  # run only when named in --only


def _cpu() -> float:
    """CPU seconds of the finished children (the step's r2bench command; a server stopped here is reaped
    before the next step's clock starts); a live server's CPU comes from Servers.cpu_s."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _server(model: str, logs: Path, name: str):
    from r2bench.llm.vllm_server import VLLMServer
    from r2bench.lm.backbones import resolve_backbone

    return VLLMServer(resolve_backbone(model), log_path=logs / f"{name}-vllm.log", kv_cache_gib=2)


class Servers:
    """vLLM servers for the steps: a running one named with --server, else one started here and kept
    for the next steps on the same model (stopped when a step needs another model, or at the end)."""

    def __init__(self, out: Path, given: dict[str, str]):
        self.out, self.given, self.live = out, given, None  # live: (model, VLLMServer)

    def release_other_than(self, model: str | None) -> None:
        """Stop a server of another model (before the next step's clock starts: its CPU is not that step's)."""
        if self.live is not None and self.live[0] != model:
            self.stop()

    def cpu_s(self) -> float:
        """CPU seconds so far of the live server's process tree (its API process and engine workers)."""
        if self.live is None or self.live[1].proc is None:
            return 0.0
        import psutil

        try:
            root = psutil.Process(self.live[1].proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def url(self, model: str, step: str) -> str:
        if model in self.given:
            return self.given[model]
        self.release_other_than(model)
        if self.live is None:
            self.live = (model, _server(model, self.out / "logs", step).start())
        return self.live[1].base_url

    def died(self) -> str | None:
        if self.live is not None and self.live[1].exit_status() is not None:
            msg = self.live[1].death_message()
            self.live = None
            return msg
        return None

    def stop(self) -> None:
        if self.live is not None:
            self.live[1].stop()
            self.live = None


def run_step(name: str, model: str | None, argv: list[str], out: Path, servers: Servers,
             served_threads: int = 1) -> dict:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # local training steps have the box's cores; steps that talk to vLLM leave them to its worker unless
    # --threads says otherwise (a scoring run alone on the box: its local decision prefill is most of its time)
    threads = "2" if model is None else str(served_threads)
    argv = [a.replace("{threads}", str(served_threads)) for a in argv]
    env = {**os.environ, "OMP_NUM_THREADS": threads, "R2BENCH_PROGRESS": "0"}
    if model is not None:
        servers.release_other_than(model)
    started, t0, c0 = datetime.now(timezone.utc), time.perf_counter(), _cpu() + servers.cpu_s()
    if model is not None:  # a server's start-up is part of the wall time of the step that started it
        argv = [a.replace("{url}", servers.url(model, name)) for a in argv]
    print(f"[{started:%H:%M:%S}] {name}: {' '.join(argv)}", flush=True)
    with open(logs / f"{name}.log", "w") as f:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=f, text=True, env=env)
        f.write(proc.stdout)
        death = servers.died() if model is not None else None
        if death is not None:
            f.write(f"\nthe vLLM server died during the step: {death}\n")
            proc.returncode = proc.returncode or 1
    lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
    run_dir = lines[-1] if lines and (Path(lines[-1]) / "run.json").is_file() else None
    rec = {"step": name, "command": " ".join(argv), "rc": proc.returncode, "started": started.isoformat(),
           "wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(_cpu() + servers.cpu_s() - c0, 1),
           "run": run_dir,
           "served": model, "stdout_tail": lines[-3:]}
    _record(out, name, rec)
    print(f"  -> rc {proc.returncode}, wall {rec['wall_s']:.0f} s, CPU {rec['cpu_s']:.0f} s", flush=True)
    return rec


def _record(out: Path, name: str, rec: dict) -> None:
    (out / "steps").mkdir(parents=True, exist_ok=True)
    if rec["rc"] == 0:
        (out / "steps" / f"{name}.json").write_text(json.dumps(rec, indent=2))
    else:  # a failed or killed attempt: kept, and its time added to the step's when it is resumed
        n = len(list((out / "steps").glob(f"{name}.failed-*.json")))
        (out / "steps" / f"{name}.failed-{n}.json").write_text(json.dumps(rec, indent=2))


def adopt(out: Path, name: str, run_dir: str, wall_s: float, cpu_s: float) -> None:
    """Record a run made by hand (same command) as the step's result."""
    if not (Path(run_dir) / "run.json").is_file():
        raise SystemExit(f"--adopt {name}={run_dir}: no run.json there")
    meta = json.loads((Path(run_dir) / "run.json").read_text())
    _record(out, name, {"step": name, "command": meta.get("command", ""), "rc": 0, "started": meta.get("created", ""),
                        "wall_s": wall_s, "cpu_s": cpu_s, "run": str(Path(run_dir).resolve()), "adopted": True,
                        "stdout_tail": []})


def _metrics(run: str):
    import polars as pl

    return pl.read_parquet(Path(run) / "metrics.parquet").sort("instance_id")


def format_table(out: Path, recs: dict) -> None:
    import polars as pl

    rows = []
    for name, label in (("format-base", "base SmolLM2"), ("format-sft", "after SFT")):
        if name not in recs:
            continue
        rat = pl.read_parquet(Path(recs[name]["run"]) / "rationales.parquet")
        ok = rat["finished"] & rat["decision"].is_in(["Recommend", "Not Recommend"])
        shares = [float((ok & (rat["n_tokens"] <= k)).mean()) for k in (64, 128, 256)]
        rec = rat.filter(ok)
        rows.append((label, rat.height, shares, int((rec["decision"] == "Recommend").sum()), rec.height))
    if rows:
        print("\nFigure 2 format following, greedy, unconstrained, first 20 test instances (400 reasonings): share "
              "that reaches </answer> with a valid decision within N tokens")
        print("| model | reasonings | 64 | 128 | 256 | Recommend among the decided |")
        print("|---|---:|---:|---:|---:|---:|")
        for label, n, s, rec, dec in rows:
            print(f"| {label} | {n} | {s[0]:.1%} | {s[1]:.1%} | {s[2]:.1%} | {rec}/{dec} |")


def probe_table(out: Path) -> None:
    """Where the signal is: on the SFT model's held-out CoT decision states (val, greedy reasonings), NDCG@10 of
    the zero-shot margin, the REINFORCE head and the supervised listwise probe, per instance, paired."""
    import numpy as np
    import torch

    from r2bench.eval.metrics import per_instance_metrics
    from r2bench.eval.significance import wilcoxon_p
    from r2bench.r2rank.features import load_split
    from r2bench.r2rank.head import ScoringHead

    infos = {k: out / d / "final" / "r2rank_train.json" for k, d in (("head", "head-sft"), ("probe", "probe-sft"))}
    if not all(p.is_file() for p in infos.values()):
        return
    meta = {k: json.loads(p.read_text()) for k, p in infos.items()}
    val = load_split(meta["head"]["features"][meta["head"]["eval_split"]])
    target = val.target.numpy()

    def ndcg(scores: np.ndarray) -> np.ndarray:
        return np.asarray(per_instance_metrics(scores, target, ("ndcg@10",))["ndcg@10"], dtype=float)

    rows = {"zero-shot margin (head=none)": ndcg(val.margin[:, 0].numpy())}
    for k, label in (("head", "REINFORCE head (the RL warm start)"), ("probe", "listwise-CE probe")):
        head = ScoringHead.load(out / ("head-sft" if k == "head" else "probe-sft") / "final" / "head.safetensors")
        with torch.no_grad():
            rows[label] = ndcg(head(val.hidden[:, 0].float()).numpy())
    base = rows["zero-shot margin (head=none)"]
    print(f"\nSignal in the SFT model's CoT decision states: {val.hidden.shape[0]} held-out val instances "
          f"(greedy {TOKENS}-token reasonings from vLLM; heads trained on {meta['head']['train_instances']} train "
          f"instances' sampled reasonings)")
    print("| scorer | val NDCG@10 | p vs the margin |")
    print("|---|---:|---:|")
    for label, v in rows.items():
        p = "-" if v is base else f"{wilcoxon_p(v, base):.2g}"
        print(f"| {label} | {v.mean():.4f} | {p} |")


def summarize(out: Path, plot: Path | None) -> None:
    from r2bench.eval.significance import wilcoxon_p

    recs = {p.stem: json.loads(p.read_text()) for p in sorted((out / "steps").glob("*.json")) if "." not in p.stem}
    print("\n| step | wall (min) | CPU (min) | attempts |")
    print("|---|---:|---:|---:|")
    for name, _, _ in steps(out):
        if name in recs:
            tries = [json.loads(p.read_text()) for p in sorted((out / "steps").glob(f"{name}.failed-*.json"))]
            wall, cpu = (sum(x[k] for x in [*tries, recs[name]]) for k in ("wall_s", "cpu_s"))
            print(f"| {name} | {wall / 60:.1f} | {cpu / 60:.1f} | {len(tries) + 1} |")
    scored = [n for n in ("zero-shot", "sft-only", "sft-head", "sft-rl", "rl-only-test")
              if n in recs and recs[n].get("run")]
    if scored:
        ref = {k: _metrics(recs[k]["run"]) for k in ("zero-shot", "sft-only") if k in scored}
        print("\n| run (ML-100K test, 95 instances) | NDCG@1 | NDCG@5 | NDCG@10 | p vs zero-shot | p vs SFT-only |")
        print("|---|---:|---:|---:|---:|---:|")
        for name in scored:
            m = _metrics(recs[name]["run"])
            ps = []
            for k in ("zero-shot", "sft-only"):
                ok = k in ref and k != name and ref[k]["instance_id"].to_list() == m["instance_id"].to_list()
                ps.append(f"{wilcoxon_p(m['ndcg@10'].to_numpy(), ref[k]['ndcg@10'].to_numpy()):.2g}" if ok else "-")
            print(f"| {name} | {m['ndcg@1'].mean():.4f} | {m['ndcg@5'].mean():.4f} | {m['ndcg@10'].mean():.4f} | "
                  f"{ps[0]} | {ps[1]} |")
    format_table(out, recs)
    probe_table(out)
    logs = {lab: out / d / "log.csv" for lab, d in (("SFT + RL", "rl"), ("RL only", "rl-only"))
            if (out / d / "log.csv").is_file()}
    if plot and logs:
        from r2bench.eval.metrics import random_expectation
        from r2bench.r2rank.curves import plot_rl_logs

        plot_rl_logs(logs, plot, chance=random_expectation("ndcg@10", 20),
                     title=f"R2Rank CoT RL on ML-100K, SmolLM2-135M, rollouts from vLLM ({TOKENS}-token reasonings)")
        print(f"wrote {plot}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for runs, models, logs and step records")
    ap.add_argument("--only", default="", help="comma-separated steps to run (default: all but rl-only*)")
    ap.add_argument("--skip", default="", help="comma-separated steps not to run")
    ap.add_argument("--redo", default="", help="comma-separated steps to run again even if recorded")
    ap.add_argument("--adopt", action="append", default=[], metavar="STEP=RUN_DIR[:WALL_S:CPU_S]",
                    help="record a run made by hand as the step's result")
    ap.add_argument("--plot", default="docs/img/r2rank-cot-rl-ml100k.png", help="learning-curve PNG")
    ap.add_argument("--summary-only", action="store_true", help="print the tables from the recorded steps")
    ap.add_argument("--server", action="append", default=[], metavar="MODEL=URL",
                    help="a running server of MODEL (smollm2-135m, or a model folder such as <out>/sft/final) serving "
                         "it as smollm2 (e.g. r2bench serve-local --engine vllm --model MODEL), used by the steps on that "
                         "model instead of starting one (repeatable)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads of the steps that talk to a server (their local decision prefill)")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    for spec in args.adopt:
        name, _, rest = spec.partition("=")
        run_dir, *times = rest.split(":")
        adopt(out, name, run_dir, *(float(t) for t in times) if times else (float("nan"), float("nan")))
    servers = {}
    for spec in args.server:
        model, _, url = spec.partition("=")
        servers[model if model == BASE else str(Path(model).resolve())] = url
    only = {s for s in args.only.split(",") if s}
    skip = {s for s in args.skip.split(",") if s}
    redo = {s for s in args.redo.split(",") if s}
    live = Servers(out, servers)
    try:
        failed = False if args.summary_only else _run_steps(out, only, skip, redo, live, args.threads)
    finally:
        live.stop()
    if failed:
        return 1
    summarize(out, Path(args.plot) if args.plot else None)
    return 0


def _run_steps(out: Path, only: set, skip: set, redo: set, live: Servers, served_threads: int) -> bool:
    """Run the steps asked for in order; True when one failed."""
    for name, model, argv in steps(out):
        if (only and name not in only) or name in skip or (not only and name in OPTIONAL):
            continue
        if (out / "steps" / f"{name}.json").is_file() and name not in redo:
            print(f"{name}: recorded, skipped")
            continue
        if run_step(name, model, argv, out, live, served_threads)["rc"] != 0:
            print(f"{name} failed; see {out / 'logs' / (name + '.log')}", file=sys.stderr)
            return True
    return False


if __name__ == "__main__":
    raise SystemExit(main())
