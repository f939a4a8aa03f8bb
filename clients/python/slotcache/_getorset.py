"""get_or_set decisions, sans-I/O: is the cached entry fresh, due for early refresh, or missing.

Probabilistic early refresh follows "Optimal Probabilistic Cache Stampede
Prevention" (Vattani, Chierichetti, Lowenstein, VLDB 2015), known as
XFetch. Each entry stores how long its value took to compute (``delta``)
and when it expires. A reader recomputes early when::

    now - delta * beta * ln(rand()) >= expiry        # rand() in (0, 1]

``-ln(rand())`` is exponentially distributed, so the chance grows smoothly
as expiry approaches, faster for values that are slow to compute, and
readers spread over many processes rarely refresh at once. ``beta > 1``
refreshes earlier, ``beta < 1`` later; ``beta = 0`` turns it off. TTL
jitter spreads the expiry of entries written together (a cold start) so
they do not all expire in the same instant.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from slotcache._commands import Command, Commands
from slotcache._stats import ClientStats
from slotcache._values import Entry, Values


class Verdict(Enum):
    """What the stored entry means for this caller."""

    FRESH = "fresh"  # use it
    EARLY = "early"  # still valid, but this caller should recompute it now
    MISSING = "missing"  # nothing usable: compute it


def should_refresh_early(
    now_ms: float, delta_ms: float, expires_at_ms: float, beta: float, rand: float
) -> bool:
    """XFetch: recompute before ``expires_at_ms``? ``rand`` is uniform in (0, 1]."""
    if beta <= 0 or delta_ms <= 0:
        return now_ms >= expires_at_ms
    return now_ms - delta_ms * beta * math.log(rand) >= expires_at_ms


def jittered_ttl(ttl_ms: int, jitter: float, rand: float) -> int:
    """``ttl_ms`` shortened by up to ``jitter`` (a fraction), at least 1 ms; ``rand`` in [0, 1)."""
    if jitter <= 0:
        return ttl_ms
    return max(1, round(ttl_ms * (1.0 - jitter * rand)))


@dataclass(frozen=True, slots=True)
class GetOrSet:
    """One get_or_set call's parameters, and the decisions about its entry."""

    key: bytes
    ttl_ms: int | None
    beta: float
    ttl_jitter: float

    def __post_init__(self) -> None:
        if self.ttl_ms is not None and (isinstance(self.ttl_ms, bool) or self.ttl_ms <= 0):
            raise ValueError("ttl_ms must be a positive int or None")
        if self.beta < 0:
            raise ValueError("beta must be >= 0 (0 turns early refresh off)")
        if not 0 <= self.ttl_jitter < 1:
            raise ValueError("ttl_jitter must be in [0, 1)")

    @property
    def early_refresh(self) -> bool:
        """Entries carry their compute time and expiry (early refresh needs a TTL and beta > 0)."""
        return self.beta > 0 and self.ttl_ms is not None

    def read(self, commands: Commands) -> Command[bytes | None]:
        """The read that fetches the stored bytes (decoded by :meth:`judge`)."""
        return commands.get_raw(self.key)

    def judge(
        self, values: Values, stored: bytes | None, now_ms: float, rand: Callable[[], float]
    ) -> tuple[Verdict, Any]:
        """The verdict on ``stored`` and the value it holds (None when missing)."""
        if stored is None:
            return Verdict.MISSING, None
        entry: Entry = values.load_entry(self.key, stored)
        if (
            self.early_refresh
            and entry.delta_ms is not None
            and entry.expires_at_ms is not None
            and should_refresh_early(
                now_ms, entry.delta_ms, entry.expires_at_ms, self.beta, 1.0 - rand()
            )
        ):
            return Verdict.EARLY, entry.value
        return Verdict.FRESH, entry.value

    @staticmethod
    def stale(verdict: Verdict, value: Any) -> tuple[Any] | None:
        """What other callers get while this load runs: the still-valid value, or nothing."""
        return (value,) if verdict is Verdict.EARLY else None

    @staticmethod
    def count_load(verdict: Verdict, stats: ClientStats) -> None:
        """Count a loader call (and whether it is an early refresh)."""
        stats.loader_calls += 1
        if verdict is Verdict.EARLY:
            stats.early_refreshes += 1

    def write(
        self,
        commands: Commands,
        value: Any,
        delta_ms: float,
        now_ms: float,
        rand: Callable[[], float],
    ) -> Command[bool]:
        """The write that stores a freshly computed ``value``."""
        ttl = self.ttl_ms
        if ttl is not None:
            ttl = jittered_ttl(ttl, self.ttl_jitter, rand())
        values = commands.values
        if self.early_refresh:
            assert ttl is not None
            stored = values.dump_entry(self.key, value, round(delta_ms), round(now_ms) + ttl)
        else:
            stored = values.dump(self.key, value)
        return commands.set_stored(self.key, stored, ttl)
