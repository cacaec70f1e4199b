"""One small registry used for datasets, methods and analyses.

Entries point at their implementation with a lazy ``"module:attr"`` string, so
listing what exists imports nothing heavy. Unknown names get a did-you-mean.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from r2bench.errors import R2BenchError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    name: str
    target: str  # "package.module:attr"
    description: str = ""
    extra: str | None = None  # the optional extra it needs, if any
    meta: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Any:
        module, _, attr = self.target.partition(":")
        obj = importlib.import_module(module)
        for part in attr.split(".") if attr else []:
            obj = getattr(obj, part)
        return obj


class Registry(Generic[T]):
    def __init__(self, kind: str, entry_point_group: str | None = None):
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._group = entry_point_group
        self._entry_points_loaded = entry_point_group is None

    def register(self, name: str, target: str, description: str = "", extra: str | None = None, **meta: Any) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = Entry(name, target, description, extra, dict(meta))

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=self._group):
            if ep.name not in self._entries:  # built-in names win over third-party ones
                self._entries[ep.name] = Entry(ep.name, ep.value, f"third-party ({ep.value})", None, {"third_party": True})

    def unregister(self, name: str) -> None:
        """Remove an entry (e.g. one a test registered for itself)."""
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._entries)

    def in_order(self, entry_points: bool = True) -> list[str]:
        """Names in registration order (built-ins first, third-party entry points last).
        ``entry_points=False`` skips reading installed packages' metadata (fast, for ``--help``)."""
        if entry_points:
            self._load_entry_points()
        return list(self._entries)

    def entries(self) -> list[Entry]:
        self._load_entry_points()
        return [self._entries[n] for n in sorted(self._entries)]

    def __contains__(self, name: str) -> bool:
        self._load_entry_points()
        return name in self._entries

    def get(self, name: str) -> Entry:
        self._load_entry_points()
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(sorted(self._entries))
            raise R2BenchError(f"unknown {self.kind} {name!r}{hint} (known: {known})") from None

    def load(self, name: str) -> Any:
        return self.get(name).load()
