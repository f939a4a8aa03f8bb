"""The tracking table: which subscriber read which key, bounded (pure, no I/O).

This is Redis's tracking table for client-side caching in its default mode:
a read registers (key, subscriber), and the first change to the key takes
every registration for it, so each read earns at most one invalidation.

Layout, chosen for the write path and for bytes per entry:

- one dict per slot maps a key to its holder: the subscriber itself when one
  subscriber tracks it (the common case, and no extra object), or a tuple of
  subscribers when several do (56 bytes for two, where a set costs 216; a
  key is rarely held by more than a few near caches). The keyspace listener already knows the slot,
  so a write costs one list index and, for a tracked key, one dict pop.
- each subscriber keeps ``tracked``: its keys in registration order, each
  with its slot (a shared int from :data:`SLOT_INTS`, so it costs nothing).
  That order is what the limits evict first, and the slot lets an entry be
  removed without hashing the key again.

The limits (per subscriber and in total) are enforced when a key is
registered. Eviction removes a chunk of the oldest entries at once, so that
the cost of finding them in an insertion-ordered dict stays amortized O(1),
and returns them: the caller must invalidate them, or the client would keep
a value that is no longer watched.

Releasing a departed subscriber's entries is done in bounded steps
(:meth:`TrackingTable.release`), so a subscriber with 100,000 tracked keys
does not stall the event loop when its stream ends.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Generic, Protocol, TypeVar

from slotcache.contract import SLOT_COUNT

# Slot numbers as shared int objects: ints above 256 are not cached by
# CPython, and one per tracked entry would cost 28 bytes each.
SLOT_INTS: tuple[int, ...] = tuple(range(SLOT_COUNT))
# When a limit is exceeded, evict this fraction of it at once (see above).
EVICTION_CHUNK_DIVISOR = 32
_NONE: tuple[()] = ()


class Tracker(Protocol):
    """What the table needs of a subscriber: its own tracked keys, oldest first."""

    tracked: dict[bytes, int]


T = TypeVar("T", bound=Tracker)


class TrackingTable(Generic[T]):
    """(key, subscriber) registrations with a per-subscriber and a total bound."""

    __slots__ = (
        "_retired",
        "_subscribers",
        "by_slot",
        "evictions",
        "max_keys",
        "max_per_subscriber",
        "size",
    )

    def __init__(self, max_keys: int, max_per_subscriber: int) -> None:
        if max_keys < 1 or max_per_subscriber < 1:
            raise ValueError("tracking limits must be at least 1 key")
        self.max_keys = max_keys
        self.max_per_subscriber = max_per_subscriber
        # Registrations held, departed subscribers' not yet released ones included.
        self.size = 0
        # Entries removed to respect a limit, since start.
        self.evictions = 0
        # Per slot: key -> its holder(s). Public so the keyspace listener can skip
        # an untracked slot with one falsy check; only this class changes it.
        self.by_slot: list[dict[bytes, T | tuple[T, ...]]] = [{} for _ in range(SLOT_COUNT)]
        self._subscribers: set[T] = set()
        # Entries to remove from the index: (subscriber, its former tracked keys).
        # The dicts are never changed once retired, so iterating them is safe.
        self._retired: deque[tuple[T, Iterator[tuple[bytes, int]]]] = deque()

    # ---- subscribers ---------------------------------------------------------------

    def attach(self, sub: T) -> None:
        """Let ``sub`` register keys."""
        self._subscribers.add(sub)

    def detach(self, sub: T) -> None:
        """Forget every registration of ``sub``; the index is cleaned by :meth:`release`."""
        self._subscribers.discard(sub)
        self.reset(sub)

    def reset(self, sub: T) -> None:
        """Forget the registrations ``sub`` holds now; later ones count as usual.

        O(1) here: the entries go to the release queue. Until released, they
        are still in the index but no longer in ``sub.tracked``, and
        :meth:`take` ignores them.
        """
        if sub.tracked:
            self._retired.append((sub, iter(sub.tracked.items())))
            sub.tracked = {}

    @property
    def releasing(self) -> bool:
        """Some retired entries are still in the index."""
        return bool(self._retired)

    def release(self, budget: int) -> bool:
        """Remove up to about ``budget`` retired entries from the index; True if more remain."""
        retired = self._retired
        index = self.by_slot
        while retired and budget > 0:
            sub, entries = retired[0]
            current = sub.tracked
            done = 0
            for key, slot in islice(entries, budget):
                done += 1
                if key not in current:
                    self._drop(index[slot], key, sub)
            if done < budget:
                retired.popleft()
            budget -= done
        return bool(retired)

    # ---- registrations -------------------------------------------------------------

    def track(self, sub: T, slot: int, key: bytes) -> Sequence[tuple[T, list[bytes]]]:
        """Register that ``sub`` read ``key``; return entries evicted to respect the limits.

        Each evicted entry is (subscriber, keys): those subscribers must be
        sent an invalidation for those keys.
        """
        tracked = sub.tracked
        if key in tracked:
            return _NONE
        index = self.by_slot[slot]
        holders = index.get(key)
        if holders is None:
            index[key] = sub
            self.size += 1
        elif isinstance(holders, tuple):
            if sub not in holders:
                index[key] = (*holders, sub)
                self.size += 1
        elif holders is not sub:
            index[key] = (holders, sub)
            self.size += 1
        # else: a retired entry of the same subscriber is still indexed; reuse it.
        tracked[key] = SLOT_INTS[slot]
        if len(tracked) <= self.max_per_subscriber and self.size <= self.max_keys:
            return _NONE
        return self._enforce_limits(sub)

    def take(self, slot: int, key: bytes) -> Sequence[T]:
        """``key`` changed: remove its registrations and return the subscribers to invalidate."""
        holders = self.by_slot[slot].pop(key, None)
        if holders is None:
            return _NONE
        if isinstance(holders, tuple):
            self.size -= len(holders)
            return [s for s in holders if s.tracked.pop(key, None) is not None]
        self.size -= 1
        return (holders,) if holders.tracked.pop(key, None) is not None else _NONE

    def take_slot(self, slot: int) -> dict[T, list[bytes]]:
        """Every registration of ``slot`` (a slot this node stopped serving), by subscriber."""
        index = self.by_slot[slot]
        out: dict[T, list[bytes]] = {}
        for key in list(index):
            for sub in self.take(slot, key):
                out.setdefault(sub, []).append(key)
        return out

    def holders(self, slot: int, key: bytes) -> list[T]:
        """The subscribers tracking ``key`` (for tests and diagnostics)."""
        holders = self.by_slot[slot].get(key)
        if holders is None:
            return []
        found = list(holders) if isinstance(holders, tuple) else [holders]
        return [s for s in found if key in s.tracked]

    # ---- limits --------------------------------------------------------------------

    def _enforce_limits(self, sub: T) -> list[tuple[T, list[bytes]]]:
        evicted: list[tuple[T, list[bytes]]] = []
        excess = len(sub.tracked) - self.max_per_subscriber
        if excess > 0:
            chunk = excess + self.max_per_subscriber // EVICTION_CHUNK_DIVISOR
            evicted.append((sub, self._evict_oldest(sub, chunk, keep_newest=True)))
        excess = self.size - self.max_keys
        if excess > 0:
            # Retired entries leave first: they protect nothing.
            self.release(excess)
            excess = self.size - self.max_keys
        if excess > 0:
            chunk = excess + self.max_keys // EVICTION_CHUNK_DIVISOR
            while chunk > 0:
                # The largest subscriber pays: one that reads a few keys is not
                # starved by one that reads everything.
                victim = max(self._subscribers, key=lambda s: len(s.tracked) - (s is sub))
                keys = self._evict_oldest(victim, chunk, keep_newest=victim is sub)
                if not keys:
                    break
                evicted.append((victim, keys))
                chunk -= len(keys)
        return evicted

    def _evict_oldest(self, sub: T, count: int, keep_newest: bool) -> list[bytes]:
        tracked = sub.tracked
        # The registering subscriber keeps the key just registered: evicting it
        # would invalidate a read whose reply has not even been sent.
        count = min(count, len(tracked) - keep_newest)
        oldest = list(islice(tracked.items(), count))
        index = self.by_slot
        for key, slot in oldest:
            del tracked[key]
            self._drop(index[slot], key, sub)
        self.evictions += len(oldest)
        return [key for key, _ in oldest]

    def _drop(self, index: dict[bytes, T | tuple[T, ...]], key: bytes, sub: T) -> None:
        """Remove ``sub``'s registration of ``key`` from one slot's index, if present."""
        holders = index.get(key)
        if holders is None:
            return
        if isinstance(holders, tuple):
            if sub in holders:
                rest = tuple(s for s in holders if s is not sub)
                index[key] = rest[0] if len(rest) == 1 else rest
                self.size -= 1
        elif holders is sub:
            del index[key]
            self.size -= 1
