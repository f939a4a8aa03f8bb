"""The eight Redis maxmemory policies and the LFU counter arithmetic.

Victims are chosen by sampling, as in Redis: exact LRU or LFU order across a
whole keyspace would cost a linked-list node or a heap entry per key, which
in Python is more memory than the key itself. Sampling stays close to exact
because each slot's dict is kept in recency order, so a sampled slot offers
its least recently used key.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

LFU_INIT = 5
LFU_MAX = 255


class EvictionPolicy(enum.Enum):
    """Which keys may be evicted when maxmemory is reached, and in what order."""

    NOEVICTION = "noeviction"
    ALLKEYS_LRU = "allkeys-lru"
    VOLATILE_LRU = "volatile-lru"
    ALLKEYS_LFU = "allkeys-lfu"
    VOLATILE_LFU = "volatile-lfu"
    ALLKEYS_RANDOM = "allkeys-random"
    VOLATILE_RANDOM = "volatile-random"
    VOLATILE_TTL = "volatile-ttl"

    @property
    def volatile(self) -> bool:
        """Only keys with a TTL may be evicted."""
        return self.value.startswith("volatile-")

    @property
    def lru(self) -> bool:
        """The policy needs per-key recency."""
        return self.value.endswith("-lru")

    @property
    def lfu(self) -> bool:
        """The policy needs per-key access frequency."""
        return self.value.endswith("-lfu")

    @classmethod
    def parse(cls, text: str) -> EvictionPolicy:
        """Parse a policy name, with an error that lists the valid ones."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            names = ", ".join(p.value for p in cls)
            message = f"unknown eviction policy {text!r}; expected one of: {names}"
            raise ValueError(message) from None


def lfu_increment(counter: int, log_factor: int, random: Callable[[], float]) -> int:
    """Bump a logarithmic access counter the way Redis does.

    The chance of an increment falls as the counter grows, so 8 bits cover
    millions of accesses, and every value stays a small cached int in CPython.
    """
    if counter >= LFU_MAX:
        return LFU_MAX
    base = counter - LFU_INIT
    if base <= 0 or random() < 1.0 / (base * log_factor + 1):
        return counter + 1
    return counter


def lfu_decay(counter: int, periods: int) -> int:
    """Age a counter by the number of decay periods that passed."""
    return counter - periods if counter > periods else 0
