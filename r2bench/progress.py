"""Progress bars for every loop that can take more than a few seconds.

A thin wrapper over tqdm so that the whole toolkit disables or redirects them in
one place: ``R2BENCH_PROGRESS=0`` turns them off (tests, CI logs).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def enabled() -> bool:
    return os.environ.get("R2BENCH_PROGRESS", "1") not in ("0", "false", "no")


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None, unit: str = "it", **kw: Any) -> Iterator[T]:
    from tqdm.auto import tqdm

    return iter(tqdm(iterable, desc=desc, total=total, unit=unit, disable=not enabled(), dynamic_ncols=True, **kw))


def bar(total: int | None = None, desc: str = "", unit: str = "it", **kw: Any):
    """A manually updated bar (``with bar(n) as b: b.update(k)``); tqdm shows the ETA once a unit is done.

    ``disable=True`` hides this bar whatever ``R2BENCH_PROGRESS`` says (a caller showing its own).
    """
    from tqdm.auto import tqdm

    disable = bool(kw.pop("disable", False)) or not enabled()
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True, **kw)
