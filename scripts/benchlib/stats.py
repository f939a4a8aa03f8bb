"""Statistics for benchmark figures: rates, percentiles and ratios.

Kept free of I/O so the numbers every workload reports are computed one way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def rate(count: float, seconds: float) -> float:
    """Events per second; a window of no time has no rate, so it is refused."""
    if seconds <= 0:
        raise ValueError(f"a rate needs a positive time window, got {seconds}s")
    return count / seconds


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile of already sorted values.

    Nearest rank always returns an observed value, so p99 of a latency sample
    is a latency that really happened, not an interpolation between two.
    """
    if not sorted_values:
        raise ValueError("percentile of an empty sample")
    if not 0 < q <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {q}")
    rank = math.ceil(q / 100 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either side is missing or the base is 0.

    A skipped reference yields None (JSON null) rather than a made-up number.
    """
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def per_item(total: float | None, items: float) -> float | None:
    """``total / items`` (e.g. bytes per key), None when there is nothing to divide."""
    if total is None or items <= 0:
        return None
    return total / items
