"""Hot keys: a bounded, sampled space-saving top-k of key accesses.

Redis finds hot keys only under an LFU policy, from its per-key counters;
here a 1-in-N sample of accesses feeds a space-saving summary of fixed
size, so it works under any eviction policy and costs one countdown per
access plus, for a sampled one, a dict update. When the summary is full a
new key replaces the least counted one and inherits its count (that is the
error bound space-saving reports), so a key that is really hot cannot be
pushed out by a stream of cold ones.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HotKey:
    """One key's estimated accesses (``count``) and how much of it may be inherited."""

    key: bytes
    count: int
    error: int


class HotKeys:
    """Space-saving over a 1-in-``sample`` sample of accesses; counts are scaled back up.

    The request path samples operations itself (one countdown for all its
    counters) and calls :meth:`add` for the sampled ones; :meth:`seen` does
    both for other callers.
    """

    def __init__(self, capacity: int, sample: int) -> None:
        if capacity < 1 or sample < 1:
            raise ValueError("hot-key capacity and sample rate must be >= 1")
        self.capacity = capacity
        self.sample = sample
        self.sampled = 0
        self._countdown = sample
        self._counts: dict[bytes, int] = {}
        self._errors: dict[bytes, int] = {}

    def seen(self, key: bytes) -> None:
        """Note one access; one in ``sample`` is counted."""
        self._countdown -= 1
        if self._countdown:
            return
        self._countdown = self.sample
        self.add(key)

    def add(self, key: bytes) -> None:
        """Count one sampled access."""
        self.sampled += 1
        counts = self._counts
        n = counts.get(key)
        if n is not None:
            counts[key] = n + 1
            return
        if len(counts) < self.capacity:
            counts[key] = 1
            return
        victim = min(counts, key=counts.__getitem__)
        floor = counts.pop(victim)
        self._errors.pop(victim, None)
        counts[key] = floor + 1
        self._errors[key] = floor

    def top(self, n: int) -> list[HotKey]:
        """The ``n`` most accessed keys, estimated in real accesses."""
        scale = self.sample
        best = sorted(self._counts.items(), key=lambda kv: kv[1], reverse=True)[:n]
        return [HotKey(k, c * scale, self._errors.get(k, 0) * scale) for k, c in best]

    def reset(self) -> None:
        """Forget every count (after a traffic change, to see the new pattern)."""
        self._counts.clear()
        self._errors.clear()
        self.sampled = 0
