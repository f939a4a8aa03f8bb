"""The slow log: the last N operations slower than a threshold, in memory (Redis's SLOWLOG)."""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

# Keys are kept short: the log answers "which call", not "which value".
KEY_PREFIX_BYTES = 64


@dataclass(frozen=True, slots=True)
class SlowEntry:
    """One slow operation."""

    id: int
    time_ms: int
    latency_us: int
    op: str
    key: bytes
    keys: int
    slot: int
    peer: str
    status: str


class SlowLog:
    """A bounded ring of slow operations; ids grow so a poller can tell new entries apart."""

    def __init__(self, threshold_us: int, max_len: int) -> None:
        self.threshold_us = threshold_us
        self.max_len = max_len
        self._entries: deque[SlowEntry] = deque(maxlen=max(max_len, 1))
        self._ids = itertools.count(1)
        self.total = 0

    def add(
        self,
        time_ms: int,
        latency_us: int,
        op: str,
        key: bytes,
        keys: int,
        slot: int,
        peer: str,
        status: str,
    ) -> None:
        """Keep one entry, pushing out the oldest when full."""
        if self.max_len == 0:
            return
        self.total += 1
        self._entries.append(
            SlowEntry(
                next(self._ids),
                time_ms,
                latency_us,
                op,
                key[:KEY_PREFIX_BYTES],
                keys,
                slot,
                peer,
                status,
            )
        )

    def latest(self, count: int) -> list[SlowEntry]:
        """Up to ``count`` entries, newest first (0: all)."""
        entries = list(reversed(self._entries))
        return entries[:count] if count else entries

    def reset(self) -> None:
        """Empty the log (SLOWLOG RESET)."""
        self._entries.clear()
