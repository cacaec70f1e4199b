"""Order-independent randomness for benchmark construction.

Every random draw is a pure function of a key and a counter: keys come from a
stable hash (BLAKE2b) of (seed, purpose, user_id[, position]), never Python's
``hash()``, and are expanded with the splitmix64 finaliser, vectorised in numpy.
So an instance's negatives and shuffle never depend on processing order, chunking
or which other users are in the data.
"""

from __future__ import annotations

import numpy as np

from r2bench.progress import bar
from r2bench.stablehash import stable_hash64, stable_hashes  # noqa: F401  (re-exported: data.build uses them)

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
DRAW_CHUNK = 1 << 14  # instances per batch of draws: small enough for the temporaries to stay in cache


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, vectorised (uint64 arithmetic wraps, as intended)."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64, copy=True)
        z += GOLDEN  # in place from here: the same arithmetic, fewer temporaries
        z ^= z >> np.uint64(30)
        z *= _M1
        z ^= z >> np.uint64(27)
        z *= _M2
        z ^= z >> np.uint64(31)
        return z


def stream(keys: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """Random uint64 ``[n, m]``: element (i, j) depends only on (keys[i], counters[j])."""
    with np.errstate(over="ignore"):
        return splitmix64(keys[:, None] ^ splitmix64(counters.astype(np.uint64))[None, :])


def _below(x: np.ndarray, n: int) -> np.ndarray:
    """Map uniform uint64 to uniform ints in [0, n) (multiply-shift on the high 32 bits)."""
    return (((x >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32)).astype(np.int64)


def draw_negatives(
    inst_keys: np.ndarray, inst_user: np.ndarray, user_item_keys: np.ndarray, n_items: int, n_neg: int
) -> np.ndarray:
    """``[n, n_neg]`` distinct item codes per instance, none in the user's items.

    Draw j of instance i is ``below(splitmix(key_i, j), n_items)``; rejected draws
    (the user's items, repeats) are skipped and the first ``n_neg`` accepted ones
    kept, so the result depends only on the instance key and the user's items
    (``user_item_keys``: sorted ``user * n_items + item``), never on how the draws
    are batched (chunk size, draws per round).
    """
    n = len(inst_keys)
    out = np.empty((n, n_neg), dtype=np.int64)
    chunk = DRAW_CHUNK
    with bar(total=n, desc="candidates", unit="inst") as b:
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            out[lo:hi] = _draw_chunk(inst_keys[lo:hi], inst_user[lo:hi], user_item_keys, n_items, n_neg)
            b.update(hi - lo)
    return out


def _draw_chunk(keys: np.ndarray, user: np.ndarray, user_item_keys: np.ndarray, n_items: int, n_neg: int) -> np.ndarray:
    n = len(keys)
    out = np.full((n, n_neg), -1, dtype=np.int64)
    filled = np.zeros(n, dtype=np.int64)
    todo = np.arange(n)
    user = user.astype(np.int64)
    # only the pairs of this chunk's users: a small slice keeps the lookups in cache
    first, last = np.searchsorted(user_item_keys, [user.min() * n_items, (user.max() + 1) * n_items])
    pairs = user_item_keys[first:last]
    start = 0
    width = n_neg + 5  # enough for almost every instance; the rest go round again
    while todo.size:
        counters = np.arange(start, start + width, dtype=np.uint64)
        draws = _below(stream(keys[todo], counters), n_items)  # [t, width]
        pair = user[todo][:, None] * n_items + draws
        pos = np.minimum(np.searchsorted(pairs, pair), len(pairs) - 1)
        ok = pairs[pos] != pair
        if start:  # repeats of negatives accepted in earlier rounds
            ok &= ~(draws[:, :, None] == out[todo][:, None, :]).any(axis=2)
        # repeats within this round: keep the first occurrence
        srt = np.argsort(draws, axis=1, kind="stable")
        sd = np.take_along_axis(draws, srt, axis=1)
        dup_sorted = np.zeros(sd.shape, dtype=bool)
        dup_sorted[:, 1:] = sd[:, 1:] == sd[:, :-1]
        dup = np.zeros_like(dup_sorted)
        np.put_along_axis(dup, srt, dup_sorted, axis=1)
        ok &= ~dup
        col = filled[todo][:, None] + np.cumsum(ok, axis=1) - 1
        place = ok & (col < n_neg)
        r, c = np.nonzero(place)
        out[todo[r], col[r, c]] = draws[r, c]
        filled[todo] = np.minimum(filled[todo] + ok.sum(axis=1), n_neg)
        todo = todo[filled[todo] < n_neg]
        start += width
        width = max(2 * n_neg, 8)
    return out
