from __future__ import annotations

HELP = "list the registered methods, what they do and the extra each needs"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    from r2bench.extras import available
    from r2bench.methods import METHODS

    need = {"recbole": "recbole", "llm": "openai", "train": "transformers"}
    for e in METHODS.entries():
        extra = e.extra or "-"
        ok = "" if e.extra is None or available(need.get(e.extra, e.extra)) else f"  (pip install 'r2bench[{e.extra}]')"
        print(f"{e.name:18s} [{extra:7s}] {e.description}{ok}")
    return 0
