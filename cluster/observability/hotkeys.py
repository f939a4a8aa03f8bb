"""Hot keys: a bounded, sampled space-saving top-k of key accesses.

Redis finds hot keys only under an LFU policy, from its per-key counters;
here a 1-in-N sample of accesses feeds a space-saving summary of fixed
size, so it works under any eviction policy and costs one countdown per
access plus, for a sampled one, a dict update. When the summary is full a
new key replaces the least counted one and inherits its count (that is the
error bound space-saving reports), so a key that is really hot cannot be
pushed out by a stream of cold ones. Under uniform traffic nearly every
sampled access is such a replacement, so it costs O(1), not a scan.

The request path only appends a sampled key to a list; the summary takes
them in batches of ``FOLD_EVERY`` (and before it is read). Between two
messages a node's caches are full of other work, and the summary's dicts
and sets touched one key at a time cost a cache miss each; in a batch they
stay warm.
"""

from __future__ import annotations

from dataclasses import dataclass

FOLD_EVERY = 256


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
        self._counted = 0
        self._pending: list[bytes] = []
        self._countdown = sample
        self._counts: dict[bytes, int] = {}
        self._errors: dict[bytes, int] = {}
        # Keys by count, and the lowest count present.
        self._groups: dict[int, set[bytes]] = {}
        self._low = 0

    def seen(self, key: bytes) -> None:
        """Note one access; one in ``sample`` is counted."""
        self._countdown -= 1
        if self._countdown:
            return
        self._countdown = self.sample
        self.add(key)

    @property
    def sampled(self) -> int:
        """Sampled accesses so far (counted or waiting to be)."""
        return self._counted + len(self._pending)

    def add(self, key: bytes) -> None:
        """Note one sampled access; it is counted with the next batch."""
        pending = self._pending
        pending.append(key)
        if len(pending) >= FOLD_EVERY:
            self._fold()

    def _fold(self) -> None:
        """Count the accesses noted since the last batch."""
        pending, self._pending = self._pending, []
        self._counted += len(pending)
        for key in pending:
            self._count(key)

    def _count(self, key: bytes) -> None:
        """Count one sampled access, in constant time.

        Keys are also grouped by count (Metwally's stream summary, with sets
        for its lists), so the least counted key is found without a scan:
        counts only grow by one, so when the lowest group empties the next
        one up is the new lowest.
        """
        counts, groups = self._counts, self._groups
        n = counts.get(key)
        if n is None:
            if len(counts) < self.capacity:
                n = 0
            else:
                n = self._low
                lowest = groups[n]
                victim = lowest.pop()
                del counts[victim]
                self._errors.pop(victim, None)
                self._errors[key] = n
                if not lowest:
                    del groups[n]
                    self._low = n + 1
        else:
            group = groups[n]
            group.discard(key)
            if not group:
                del groups[n]
                if n == self._low:
                    self._low = n + 1
        counts[key] = n + 1
        groups.setdefault(n + 1, set()).add(key)
        if n == 0:
            self._low = 1

    def top(self, n: int) -> list[HotKey]:
        """The ``n`` most accessed keys, estimated in real accesses."""
        self._fold()
        scale = self.sample
        best = sorted(self._counts.items(), key=lambda kv: kv[1], reverse=True)[:n]
        return [HotKey(k, c * scale, self._errors.get(k, 0) * scale) for k, c in best]

    def reset(self) -> None:
        """Forget every count (after a traffic change, to see the new pattern)."""
        self._counts.clear()
        self._errors.clear()
        self._groups.clear()
        self._low = 0
        self._counted = 0
        self._pending.clear()
