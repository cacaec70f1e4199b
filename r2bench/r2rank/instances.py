"""Which train instances a CPU-sized training run uses (``train_instances``).

A prepared benchmark has many train instances per user (ML-100K: 77,880 for 754 train
users, one per target of a sliding window), far more than a CPU run can afford when
each instance costs 20 LLM passes. The setting picks a subset:

- ``all``: every instance of the split;
- ``last-per-user``: each user's last instance (latest target, ties broken by the
  larger ``instance_id``), i.e. one instance per user;
- ``sample:N``: a seeded sample of N instances (all of them when N is larger);
- ``last-per-user:N``: a seeded sample of N of the users' last instances.

The result is ordered by ``instance_id`` and depends only on the rows, the spec and
the seed (a stable hash, never Python's salted ``hash()``), so a feature cache and an
RL run that use the same spec see the same instances.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from r2bench.errors import R2BenchError

SPEC_HELP = "all | last-per-user | sample:N | last-per-user:N"


def parse_spec(spec: str) -> tuple[str, int | None]:
    """``(kind, n)`` of a ``train_instances`` value, or a clear error naming the value."""
    s = str(spec).strip().lower()
    kind, _, n_text = s.partition(":")
    if kind not in ("all", "last-per-user", "sample") or (kind == "all" and n_text):
        raise R2BenchError(f"train_instances {spec!r}: expected {SPEC_HELP}")
    if kind == "sample" and not n_text:
        raise R2BenchError(f"train_instances {spec!r}: sample needs a size, e.g. sample:500")
    n = None
    if n_text:
        try:
            n = int(n_text)
        except ValueError:
            raise R2BenchError(f"train_instances {spec!r}: {n_text!r} is not a whole number") from None
        if n <= 0:
            raise R2BenchError(f"train_instances {spec!r}: the size must be positive")
    return kind, n


def select_instances(rows: list[dict[str, Any]], spec: str = "all", seed: int = 0) -> list[dict[str, Any]]:
    """The rows chosen by ``spec`` (see the module docstring), ordered by ``instance_id``."""
    from r2bench.stablehash import hash_seed

    kind, n = parse_spec(spec)
    chosen = sorted(rows, key=lambda r: int(r["instance_id"]))
    if kind == "last-per-user":
        last: dict[str, dict[str, Any]] = {}
        for r in chosen:  # ascending instance_id: a later row wins ties on the timestamp
            u = str(r["user_id"])
            if u not in last or int(r["target_timestamp"]) >= int(last[u]["target_timestamp"]):
                last[u] = r
        chosen = sorted(last.values(), key=lambda r: int(r["instance_id"]))
    if n is not None and n < len(chosen):
        rng = np.random.default_rng(hash_seed(seed, 2024, n))
        keep = np.sort(rng.choice(len(chosen), size=n, replace=False))
        chosen = [chosen[i] for i in keep.tolist()]
    return chosen
