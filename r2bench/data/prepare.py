"""``prepare``: source -> build -> store, the library side of ``r2bench prepare``."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from r2bench.data.benchmark import Benchmark, load_benchmark
from r2bench.data.build import BuildSpec, build_benchmark
from r2bench.data.cards import write_benchmark_card
from r2bench.data.registry import DATASETS
from r2bench.data.store import store_benchmark
from r2bench.errors import R2BenchError

log = logging.getLogger(__name__)

# options understood by the sources (everything else must be a BuildSpec field)
SOURCE_OPTIONS = ("raw_dir", "base_url", "spec_file", "skip_bad_lines", "description_words")


def make_source(dataset: str, **options: Any):
    """Instantiate the registered source of ``dataset`` (unknown names get a did-you-mean)."""
    entry = DATASETS.get(dataset)
    cls = entry.load()
    opts = {k: v for k, v in options.items() if v is not None}
    return cls(dataset, **{**entry.meta, **opts})


def resolve_spec(source_defaults: dict[str, Any], overrides: dict[str, Any]) -> BuildSpec:
    fields = set(BuildSpec.__dataclass_fields__)
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise R2BenchError(f"unknown construction parameter(s) {', '.join(unknown)} (known: {', '.join(sorted(fields))})")
    given = {k: (None if v == "none" else v) for k, v in overrides.items() if v is not None}
    values = {**source_defaults, **given}
    return BuildSpec(**values)


def prepare(
    dataset: str,
    *,
    raw_dir: str | Path | None = None,
    base_url: str | None = None,
    spec_file: str | Path | None = None,
    skip_bad_lines: bool = False,
    description_words: int | None = None,
    root: str | Path | None = None,
    **spec_overrides: Any,
) -> Benchmark:
    """Build ``dataset`` into ``$R2BENCH_HOME/benchmarks/<dataset>/<fingerprint>/`` and load it.

    ``spec_overrides`` are :class:`~r2bench.data.build.BuildSpec` fields (``seed``,
    ``limit_users``, ``history_len``, ``n_candidates``, ``window_start_ms``...); None
    means "the source's default", the string ``"none"`` clears a default (a window).
    The benchmark's data card is written next to its manifest (``card.md``); the
    committed ``data_cards/`` are only read (``r2bench card --write-repo-card``
    updates them).
    """
    t0 = time.perf_counter()
    source = make_source(
        dataset, raw_dir=raw_dir, base_url=base_url, spec_file=spec_file,
        skip_bad_lines=skip_bad_lines or None, description_words=description_words,
    )
    spec = resolve_spec(source.spec_defaults, spec_overrides)  # bad parameters fail before any reading
    source.window = (spec.window_start_ms, spec.window_end_ms)
    data = source.load()
    name = data.dataset or dataset
    built = build_benchmark(name, data.interactions, data.items, spec, users=data.users, source=data.info, where=data.where)
    del data  # the raw frames are not needed while the tables are written (the peak of a big prepare)
    folder = store_benchmark(built, root)
    bench = load_benchmark(folder)
    description = DATASETS.get(name).description if name in DATASETS else None
    write_benchmark_card(folder, bench.manifest, description)
    log.info("prepared %s in %.1fs -> %s", bench.describe(), time.perf_counter() - t0, folder)
    return bench
