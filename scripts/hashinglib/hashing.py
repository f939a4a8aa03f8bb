"""The hash functions every scheme shares: one 64-bit hash per key, one seed per server.

A scheme is only as good as its hash; using one strong hash of each key
(BLAKE2b, 64 bits) and the splitmix64 finaliser for every derived value keeps
the comparison about placement rules. The finaliser exists in a vectorised
form (numpy, wrapping uint64 arithmetic) and a scalar one (Python ints),
which give the same bits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
MASK64 = (1 << 64) - 1
# The golden-ratio increment of splitmix64: derived values (vnode points, retries)
# are the finaliser of seed + i * GOLDEN, the generator's own sequence.
GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


def key_hash(key: bytes) -> int:
    """The 64-bit hash of a key that every scheme but the slots starts from."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


def key_hashes(keys: Iterable[bytes]) -> U64:
    """``key_hash`` of every key, as one array."""
    return np.fromiter(map(key_hash, keys), dtype=np.uint64)


def server_seed(server: int) -> int:
    """A server's 64-bit seed, from its name, so it is the same in every cluster it is in."""
    return key_hash(f"server-{server}".encode())


def mix64(x: int) -> int:
    """The splitmix64 finaliser of one value: a bijection that spreads every input bit."""
    x &= MASK64
    x = ((x ^ (x >> 30)) * _M1) & MASK64
    x = ((x ^ (x >> 27)) * _M2) & MASK64
    return x ^ (x >> 31)


def mix64_array(x: U64) -> U64:
    """``mix64`` of every element (a new array; uint64 arithmetic wraps as in C)."""
    out = x ^ (x >> np.uint64(30))
    out *= np.uint64(_M1)
    out ^= out >> np.uint64(27)
    out *= np.uint64(_M2)
    out ^= out >> np.uint64(31)
    return out


def sequence(seed: int, count: int, start: int = 0) -> U64:
    """``mix64(seed + i * GOLDEN)`` for ``i`` in ``start .. start+count-1``."""
    steps = np.arange(start, start + count, dtype=np.uint64) * np.uint64(GOLDEN)
    return mix64_array(steps + np.uint64(seed & MASK64))


def unit_interval(x: U64) -> npt.NDArray[np.float64]:
    """Map 64-bit hashes to floats strictly inside (0, 1), using their top 53 bits."""
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
