"""The one stable hash: 64-bit BLAKE2b of UTF-8 text, the same on every machine, process and run.

Python's ``hash()`` is salted per process, so anything that must be reproducible
(benchmark construction, data sharding, training seeds) derives its randomness from
:func:`hash64` instead. The helpers below differ only in how they turn their parts
into text; each encoding is frozen, because changing it would change prepared
benchmarks (their fingerprints) and every seeded training run.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

SEP = "\x1f"  # ASCII unit separator: cannot occur in ids, so ("a", "bc") and ("ab", "c") differ


def hash64(text: str) -> int:
    """BLAKE2b-64 of ``text`` (UTF-8) as an unsigned little-endian integer."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def stable_hash64(*parts: object) -> int:
    """:func:`hash64` of the parts' ``str()`` joined by U+001F (benchmark construction, sharding)."""
    return hash64(SEP.join(str(p) for p in parts))


def stable_hashes(prefix: tuple[object, ...], values: list[str]) -> "np.ndarray":
    """:func:`stable_hash64` of ``(*prefix, v)`` for every value, as uint64 (prefix joined once)."""
    import numpy as np

    head = SEP.join(str(p) for p in prefix) + SEP
    out = np.empty(len(values), dtype=np.uint64)
    for i, v in enumerate(values):
        out[i] = hash64(head + v)
    return out


def stable_rng(*parts: Any) -> "np.random.Generator":
    """A numpy generator seeded by :func:`hash64` of ``repr(parts)`` (SFT data and TALLRec sampling)."""
    import numpy as np

    return np.random.default_rng(hash64(repr(parts)))


def hash_seed(*parts: int) -> int:
    """A 63-bit seed from integers: :func:`hash64` of ``repr`` of the int tuple (training loops)."""
    return hash64(repr(tuple(int(p) for p in parts))) & ((1 << 63) - 1)
