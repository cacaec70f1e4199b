"""The construction parameters of a benchmark (:class:`BuildSpec`), recorded in its manifest.

Its own module so that the builder's parts (:mod:`r2bench.data.interactions`,
:mod:`r2bench.data.instances`) can use it without importing the builder;
``r2bench.data.build`` re-exports it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from r2bench.errors import DataError

TITLE_RULES = ("nonempty", "r2ec")
# timestamps below this (ms) would be before 1973-03-03: almost surely seconds
MIN_PLAUSIBLE_MS = 100_000_000_000


@dataclass(frozen=True)
class BuildSpec:
    """Every construction parameter; defaults follow the paper's protocol."""

    seed: int = 0
    history_len: int = 20
    n_candidates: int = 20
    min_interactions: int = 2
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    window_start_ms: int | None = None
    window_end_ms: int | None = None
    title_rule: str = "nonempty"
    max_title_words: int = 20
    limit_users: int | None = None
    dedup: str = "earliest"
    negatives: str = "uniform, excluding all items of the user"

    def __post_init__(self) -> None:
        if self.history_len < 1:
            raise DataError(f"history_len must be >= 1, got {self.history_len}")
        if self.n_candidates < 2:
            raise DataError(f"n_candidates must be >= 2, got {self.n_candidates}")
        if self.min_interactions < 2:
            raise DataError(f"min_interactions must be >= 2 (a history and a target), got {self.min_interactions}")
        r = tuple(float(x) for x in self.split_ratios)
        if len(r) != 3 or min(r) < 0 or abs(sum(r) - 1.0) > 1e-6:
            raise DataError(f"split_ratios must be three non-negative numbers summing to 1, got {self.split_ratios}")
        object.__setattr__(self, "split_ratios", r)
        if self.title_rule not in TITLE_RULES:
            raise DataError(f"title_rule must be one of {TITLE_RULES}, got {self.title_rule!r}")
        if self.limit_users is not None and self.limit_users < 1:
            raise DataError(f"limit_users must be >= 1, got {self.limit_users}")
        if self.dedup != "earliest":
            raise DataError(f"dedup must be 'earliest', got {self.dedup!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["split_ratios"] = list(self.split_ratios)
        return d
