from __future__ import annotations

HELP = "list the registered datasets and whether they are prepared"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    from r2bench import paths
    from r2bench.data.benchmark import LATEST
    from r2bench.data.registry import DATASETS

    rows = []
    for e in DATASETS.entries():
        latest = paths.benchmark_root(e.name) / LATEST
        prepared = latest.read_text().strip()[:12] if latest.is_file() else "no"
        rows.append((e.name, e.meta.get("source", ""), e.meta.get("license", ""), prepared))
    widths = [max(len(r[i]) for r in rows + [("name", "source", "license", "prepared")]) for i in range(4)]
    for r in [("name", "source", "license", "prepared")] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0
