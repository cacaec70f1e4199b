"""The one stable hash keeps the exact values of the four copies it replaced.

Each expected value below is computed with the formula the replaced copy used
(``data/sampling.py``, ``r2rank/synthesize.py``, ``lm/engine.py``,
``r2rank/rl.py``), so a change of encoding in ``r2bench.stablehash`` (which would
change prepared benchmarks and every seeded training run) fails here.
"""

from __future__ import annotations

import hashlib

import numpy as np

from r2bench.lm.engine import user_shard
from r2bench.stablehash import hash64, hash_seed, stable_hash64, stable_hashes, stable_rng


def _b2(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def test_hash64_is_blake2b_64_little_endian():
    for text in ("", "u1", "ünïcode", "a\x1fb"):
        assert hash64(text) == _b2(text)
    assert stable_hash64(0, "split", "u1") == 0x9E4EE8844E96F1EA  # the value data/test_build.py freezes


def test_construction_hashes_match_the_sampling_formula():
    values = ["u1", "u2", "user with spaces", "é"]
    got = stable_hashes((7, "instance"), values)
    assert got.dtype == np.uint64
    assert [int(x) for x in got] == [_b2("\x1f".join(["7", "instance", v])) for v in values]
    assert [int(x) for x in got] == [stable_hash64(7, "instance", v) for v in values]


def test_training_seeds_match_the_replaced_copies():
    for parts in [(0, 17), (3, 12, 1), (2**40, 0, 5)]:
        old = _b2(repr(tuple(int(p) for p in parts))) & ((1 << 63) - 1)  # r2rank/rl.py
        assert hash_seed(*parts) == old and 0 <= old < 2**63
    parts = (0, "sft-negatives", 12)
    old_rng = np.random.default_rng(_b2(repr(parts)))  # r2rank/synthesize.py
    assert stable_rng(*parts).permutation(50).tolist() == old_rng.permutation(50).tolist()
    for uid, world in (("u1", 4), ("user-77", 3), (12345, 8)):
        assert user_shard(uid, world) == _b2(str(uid)) % world  # lm/engine.py
