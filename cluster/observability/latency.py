"""Latency buckets kept as plain lists, in the shape OpenTelemetry exports.

An OTel histogram ``record`` costs about 16 µs here, more than many
operations; a bisect and a list increment cost well under one. The bounds
are shared with clusterctl (``slotcache.latency``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from functools import partial

from slotcache.latency import BOUNDS_S, BOUNDS_US, BUCKETS

__all__ = ["BOUNDS_NS", "BOUNDS_S", "BUCKETS", "bucket", "merged", "new_buckets"]

BOUNDS_NS: tuple[int, ...] = tuple(b * 1000 for b in BOUNDS_US)


bucket: Callable[[int], int] = partial(bisect_left, BOUNDS_NS)
"""The index of the bucket an elapsed time in ns falls in (``le`` semantics, as Prometheus).

A partial of the C bisect rather than a function: every call and every
Redis-protocol read is counted, and this saves a Python frame each time.
"""


def new_buckets() -> list[int]:
    """Empty counts for one series."""
    return [0] * BUCKETS


def merged(series: Iterable[Sequence[int]]) -> list[int]:
    """Bucket counts of several series added together."""
    total = new_buckets()
    for counts in series:
        for i, n in enumerate(counts):
            total[i] += n
    return total
