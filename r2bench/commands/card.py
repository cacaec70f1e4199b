"""``r2bench card DATASET``: print (and refresh) a dataset's data card."""

from __future__ import annotations

HELP = "print a dataset's data card with the measured stats of its latest prepare"


def add_arguments(parser) -> None:
    parser.add_argument("dataset", help="registered dataset name")
    parser.add_argument("--write", action="store_true", help="also write the stats into data_cards/<dataset>.md")


def run(args) -> int:
    from r2bench.data.benchmark import load_benchmark
    from r2bench.data.cards import card_path, fill_card, refresh_card
    from r2bench.data.registry import DATASETS
    from r2bench.errors import R2BenchError

    entry = DATASETS.get(args.dataset)  # did-you-mean on a typo
    try:
        manifest = load_benchmark(entry.name).manifest
    except R2BenchError:
        manifest = None
    path = card_path(entry.name)
    text = path.read_text(encoding="utf-8") if path.is_file() else f"# {entry.name}\n\n{entry.description}\n"
    if entry.name == "custom":  # a slot for user data: the card is documentation only
        print(text, end="")
        return 0
    print(fill_card(text, manifest, entry.name), end="")
    if args.write:
        if manifest is None:
            raise R2BenchError(f"{entry.name} is not prepared yet: run `r2bench prepare {entry.name}` first")
        written = refresh_card(entry.name, manifest)
        if written is None:
            raise R2BenchError(f"no data card to update at {path}")
    return 0
