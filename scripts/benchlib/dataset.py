"""The data every workload uses: key names and the value bytes.

Both peers get byte-identical keys and values, so any difference in the
figures comes from the servers and their clients, not from the data.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

KEY_BYTES = 16
VALUE_BYTES = 100
_KEY_PREFIX = b"key:"
_KEY_DIGITS = KEY_BYTES - len(_KEY_PREFIX)


def key(i: int) -> bytes:
    """The ``i``-th key: exactly :data:`KEY_BYTES` bytes, e.g. ``b"key:000000000042"``."""
    if not 0 <= i < 10**_KEY_DIGITS:
        raise ValueError(f"key index {i} does not fit in {KEY_BYTES} bytes")
    return b"%s%0*d" % (_KEY_PREFIX, _KEY_DIGITS, i)


def keys(n: int) -> list[bytes]:
    """The first ``n`` keys, built once so the timed loops only index a list."""
    return [key(i) for i in range(n)]


def value(size: int = VALUE_BYTES, seed: int = 0) -> bytes:
    """A random-looking value of ``size`` bytes (incompressible, as real payloads tend to be)."""
    return random.Random(seed).randbytes(size)


def batches(n: int, batch: int) -> Iterator[range]:
    """Index ranges of at most ``batch`` covering ``0..n-1``, for preloading with MSET."""
    if batch < 1:
        raise ValueError("batch must be >= 1")
    for start in range(0, n, batch):
        yield range(start, min(start + batch, n))
