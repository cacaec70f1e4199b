"""``r2bench r2rank synthesize|sft|rl``: train the R2Rank reference model on a benchmark."""

from __future__ import annotations

HELP = "train R2Rank: synthesize SFT data with a teacher, SFT, end-to-end RL (Algorithm 1), frozen-feature head"
DESCRIPTION = (
    "Train the R2Rank reference model. Typical pipeline: `r2bench r2rank synthesize --dataset D --out sft-data`, "
    "`r2bench r2rank sft --data sft-data --out sft`, `r2bench r2rank rl --dataset D --out rl "
    "--set backbone=sft/final --set variant=sft+rl`, then `r2bench run --method r2rank --dataset D "
    "--set backbone=rl/final`. Settings: --set key=value / --config file.yaml (see r2bench/r2rank/train_config.py). "
    "Several processes (sft, rl): `accelerate launch [--config_file configs/accelerate/<engine>.yaml] "
    "--num_processes N -m r2bench r2rank rl ...` (DDP, DeepSpeed ZeRO or FSDP2; docs/r2rank/distributed.md)."
)


def _common(p) -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--config", default=None, help="YAML file of config values")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder (resumed when it holds checkpoints)")


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="r2rank_cmd", metavar="STAGE")
    s = sub.add_parser("synthesize", help="ask a teacher for self-reflective responses; keep those matching the label")
    s.add_argument("--dataset", required=True, help="prepared benchmark name or folder")
    _common(s)
    f = sub.add_parser("sft", help="fine-tune the backbone on the kept responses (loss on the response only)")
    f.add_argument("--data", required=True, help="folder written by `r2rank synthesize`")
    _common(f)
    f.add_argument("--no-resume", action="store_true", help="start over even if checkpoints exist")
    r = sub.add_parser("rl", help="end-to-end RL under the Plackett-Luce surrogate (Algorithm 1)")
    r.add_argument("--dataset", required=True, help="prepared benchmark name or folder")
    _common(r)
    r.add_argument("--no-resume", action="store_true", help="start over even if checkpoints exist")
    fe = sub.add_parser("features", help="cache the frozen backbone's decision states (resumable safetensors shards)")
    fe.add_argument("--dataset", required=True, help="prepared benchmark name or folder")
    _common(fe)
    fe.add_argument("--split", action="append", choices=["train", "val", "test"], default=None,
                    help="split(s) to cache (repeatable; default: train and the eval split)")
    h = sub.add_parser("head", help="train the scoring head on cached frozen states (REINFORCE under "
                                    "Plackett-Luce, or the listwise-ce probe) with held-out early stopping")
    h.add_argument("--dataset", required=True, help="prepared benchmark name or folder")
    _common(h)


def run(args) -> int:
    from r2bench.config import build_config, parse_set_args
    from r2bench.errors import R2BenchError

    stage = getattr(args, "r2rank_cmd", None)
    if stage is None:
        raise R2BenchError("choose a stage: r2bench r2rank synthesize|sft|rl|features|head (see --help)")
    overrides = parse_set_args(args.set)
    if stage == "synthesize":
        from r2bench.data.benchmark import load_benchmark
        from r2bench.r2rank.synthesize import synthesize
        from r2bench.r2rank.train_config import SynthesizeConfig

        cfg = build_config(SynthesizeConfig, overrides, args.config)
        stats = synthesize(load_benchmark(args.dataset), cfg, args.out, seed=args.seed)
        print(f"asked {stats['asked']}, answered {stats['answered']}, kept {stats['kept']} "
              f"(positive {stats['kept_positive']}/{stats['asked_positive']}, "
              f"negative {stats['kept_negative']}/{stats['asked_negative']}) -> {args.out}")
        return 0

    from r2bench.extras import require

    require("torch", purpose="R2Rank training")
    require("transformers", purpose="R2Rank training")
    if stage in ("features", "head"):
        return _frozen(stage, args, overrides)
    from r2bench.lm.engine import Engine

    if stage == "sft":
        from r2bench.r2rank.sft import run_sft
        from r2bench.r2rank.train_config import SFTConfig

        cfg = build_config(SFTConfig, overrides, args.config)
        train = lambda engine: run_sft(cfg, args.data, args.out, seed=args.seed,  # noqa: E731
                                       resume=not args.no_resume, engine=engine)
    else:
        from r2bench.data.benchmark import load_benchmark
        from r2bench.r2rank.rl import run_rl
        from r2bench.r2rank.train_config import RLConfig

        cfg = build_config(RLConfig, overrides, args.config)
        bench = load_benchmark(args.dataset)
        train = lambda engine: run_rl(cfg, bench, args.out, seed=args.seed,  # noqa: E731
                                      resume=not args.no_resume, engine=engine)
    engine = Engine()  # one process, or several under `accelerate launch` / torchrun (DDP, DeepSpeed, FSDP2)
    try:
        final = train(engine)
        if engine.is_main:  # every process trains; only the main one writes and reports
            print(f"{stage} done -> {final}")
    finally:
        engine.end()
    return 0


def _frozen(stage: str, args, overrides) -> int:
    """``features`` / ``head``: the frozen-feature cache and the head trained on it (one process)."""
    from pathlib import Path

    from r2bench.config import build_config
    from r2bench.data.benchmark import load_benchmark
    from r2bench.r2rank.train_config import HeadTrainConfig

    cfg = build_config(HeadTrainConfig, overrides, args.config)
    bench = load_benchmark(args.dataset)
    if stage == "features":
        from r2bench.r2rank.features import build_features

        root = Path(cfg.features_dir) if cfg.features_dir else Path(args.out) / "features"
        folders = build_features(cfg, bench, root, seed=args.seed, splits=args.split)
        for split, folder in folders.items():
            print(f"{split}: {folder}")
        return 0
    import json

    from r2bench.r2rank.head_training import run_head_training

    final = run_head_training(cfg, bench, args.out, seed=args.seed)
    meta = json.loads((final / "r2rank_train.json").read_text())
    print(f"best epoch {meta['best_epoch']} of {meta['epochs_run']}: {cfg.eval_split} NDCG@10 "
          f"{meta['best_val_ndcg@10']:.4f} -> {final / 'head.safetensors'}")
    return 0
