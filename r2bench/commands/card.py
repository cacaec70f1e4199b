"""``r2bench card DATASET``: print a prepared benchmark's data card (maintainers: update the committed one)."""

from __future__ import annotations

HELP = "print the data card of a dataset's latest prepared benchmark (or of a benchmark folder)"


def add_arguments(parser) -> None:
    parser.add_argument("dataset", help="registered dataset name, or a prepared benchmark folder")
    parser.add_argument(
        "--write-repo-card", action="store_true",
        help="maintainers: write the stats of the latest prepare (default spec only) into the committed "
             "data_cards/<dataset>.md; prepare never touches it",
    )


def _default_spec_diff(dataset: str, spec: dict) -> list[str]:
    """Construction parameters where ``spec`` differs from the dataset's default."""
    from r2bench.data.prepare import make_source, resolve_spec

    default = resolve_spec(make_source(dataset).spec_defaults, {}).to_dict()
    return sorted(k for k in set(default) | set(spec) if default.get(k) != spec.get(k))


def run(args) -> int:
    from pathlib import Path

    from r2bench.data.benchmark import load_benchmark
    from r2bench.data.cards import CARD_FILE, benchmark_card, card_path, fill_card, write_repo_card
    from r2bench.data.registry import DATASETS
    from r2bench.errors import R2BenchError

    if (Path(args.dataset).expanduser() / "manifest.json").is_file():  # a benchmark folder
        bench = load_benchmark(args.dataset)
        name = bench.name
    else:
        name = DATASETS.get(args.dataset).name  # did-you-mean on a typo
        try:
            bench = load_benchmark(name)
        except R2BenchError:
            bench = None
    if args.write_repo_card:
        if bench is None:
            raise R2BenchError(f"{name} is not prepared yet: run `r2bench prepare {name}` first")
        if name not in DATASETS or name == "custom":
            raise R2BenchError(f"{name} is not a registered dataset: it has no committed card")
        diff = _default_spec_diff(name, bench.manifest["spec"])
        if diff:
            raise R2BenchError(
                f"the latest {name} benchmark ({bench.path}) was not built with the default spec (differs in "
                f"{', '.join(diff)}); the committed card shows the canonical benchmark: run `r2bench prepare {name}` "
                f"with no construction flags first"
            )
        written = write_repo_card(name, bench.manifest)
        if written is None:
            raise R2BenchError(f"no data card to update at {card_path(name)}")
        print(f"wrote the stats of {bench.fingerprint[:16]} into {written}")
        return 0
    if bench is not None:
        own = bench.path / CARD_FILE
        # benchmarks prepared before cards lived with them have none: render it from the manifest
        print(own.read_text(encoding="utf-8") if own.is_file() else benchmark_card(bench.manifest), end="")
        return 0
    path = card_path(name)
    entry = DATASETS.get(name)
    text = path.read_text(encoding="utf-8") if path.is_file() else f"# {name}\n\n{entry.description}\n"
    print(text if name == "custom" else fill_card(text, None, name), end="")  # custom: documentation only
    return 0
