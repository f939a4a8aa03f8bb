"""Latency buckets kept as plain lists, in the shape OpenTelemetry exports.

An OTel histogram ``record`` costs about 16 µs here, more than many
operations; a bisect and a list increment cost well under one.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence

# Upper bounds (inclusive) from 10 µs to 10 s, in a 1-2-5 series: fine enough
# to tell a fast hit from a slow batch, few enough for a cheap scrape.
BOUNDS_S: tuple[float, ...] = (*(m * 10.0**e for e in range(-5, 1) for m in (1, 2, 5)), 10.0)
BOUNDS_NS: tuple[int, ...] = tuple(round(b * 1e9) for b in BOUNDS_S)
BUCKETS = len(BOUNDS_NS) + 1  # the last one has no upper bound


def bucket(elapsed_ns: int) -> int:
    """The index of the bucket ``elapsed_ns`` falls in (``le`` semantics, as Prometheus)."""
    return bisect_left(BOUNDS_NS, elapsed_ns)


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


def quantile_us(counts: Sequence[int], q: float) -> int | None:
    """The upper bound (µs) of the bucket holding quantile ``q``; None without samples.

    A bucket's upper bound overstates the value by at most one bucket width,
    which is what an operator wants from a tail figure: never optimistic.
    """
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        seen += n
        if seen >= rank and n:
            return BOUNDS_NS[i] // 1000 if i < len(BOUNDS_NS) else BOUNDS_NS[-1] // 1000 * 10
    return BOUNDS_NS[-1] // 1000 * 10
