"""The latency buckets nodes report, shared by the server and clusterctl.

A node counts each operation's server-side time into these buckets; the
Info RPC reports them as ``latency.bucket.NN`` and the metrics endpoint as
``rpc_server_call_duration_seconds``. clusterctl turns the difference of
two readings into a recent percentile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# Upper bounds (inclusive) from 10 µs to 10 s, in a 1-2-5 series: fine enough
# to tell a fast hit from a slow batch, few enough for a cheap scrape.
BOUNDS_S: tuple[float, ...] = (*(m * 10.0**e for e in range(-5, 1) for m in (1, 2, 5)), 10.0)
BOUNDS_US: tuple[int, ...] = tuple(round(b * 1e6) for b in BOUNDS_S)
BUCKETS = len(BOUNDS_US) + 1  # the last one has no upper bound
INFO_PREFIX = "latency.bucket."


def info_key(index: int) -> str:
    """The Info stats key of bucket ``index``."""
    return f"{INFO_PREFIX}{index:02d}"


def from_info(stats: Mapping[str, int]) -> list[int]:
    """The bucket counts in an Info reply's stats (zeros from a node that has none)."""
    return [stats.get(info_key(i), 0) for i in range(BUCKETS)]


def quantile_us(counts: Sequence[int], q: float) -> int | None:
    """The upper bound (µs) of the bucket holding quantile ``q``; None without samples.

    A bucket's upper bound overstates the value by at most one bucket, which
    is what an operator wants from a tail figure: never optimistic. Past the
    last bound the answer is that bound.
    """
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        seen += n
        if n and seen >= rank:
            return BOUNDS_US[min(i, len(BOUNDS_US) - 1)]
    return BOUNDS_US[-1]
