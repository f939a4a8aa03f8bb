"""Near-cache invalidation: subscriptions, the keyspace listener and slot moves (pure, no I/O).

The hub is the one keyspace listener for every subscription of the node. It
is registered only while at least one subscription is open, so a node that
nobody subscribes to pays nothing on its write path: the keyspace loops
over its listeners and this one is not among them.

With subscribers, a change costs two list lookups for slots nobody
watches; a tracked key adds one dict pop and a dict insert per subscriber
to invalidate. Each subscriber's :class:`~cluster.tracking.outbox.Outbox`
collects what changed, and its stream (in :mod:`cluster.tracking.service`)
is woken once when the outbox stops being empty; it writes one message per
wake-up, covering everything that changed in between.

Two modes, after Redis's CLIENT TRACKING:

- keys (the default): tracked reads register (key, subscriber) in the
  :class:`~cluster.tracking.table.TrackingTable`; the first change takes the
  registration and queues the key once.
- broadcast: the subscriber names slots; every change in them is queued,
  and nothing is remembered per key.

Keys change on this node only in slots it serves (as primary, or as a
replica following its primary). When it stops serving a slot, writes to
that slot happen elsewhere and would never reach these subscribers, so
every registration in the slot is invalidated and broadcast subscribers of
the slot are told to drop it.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from slotcache.contract import SLOT_COUNT

from ..keyspace import Keyspace, RemovalCause
from ..tracking.outbox import Batch, Outbox
from ..tracking.table import TrackingTable

ALL_SLOTS = range(SLOT_COUNT)


class Mode(enum.IntEnum):
    """What a subscription is told about; values match ``slotcache.v1.TrackingMode``."""

    KEYS = 0
    BROADCAST = 1


@dataclass(frozen=True)
class TrackingLimits:
    """Memory bounds (the server's ``--tracking-*`` flags)."""

    # Registrations of all subscribers together (Redis's tracking-table-max-keys).
    max_keys: int = 1_000_000
    # Registrations of one subscriber.
    max_keys_per_subscriber: int = 100_000
    # Invalidations waiting for one subscriber before they become a flush.
    queue_max: int = 100_000


class Subscriber:
    """One open subscription: its mode, what it tracks or watches, and its outbox."""

    __slots__ = ("closed", "id", "mode", "outbox", "slots", "tracked", "wake")

    def __init__(
        self,
        sub_id: str,
        mode: Mode,
        slots: tuple[int, ...],
        queue_max: int,
        wake: Callable[[], None],
    ) -> None:
        self.id = sub_id
        self.mode = mode
        # Broadcast mode: the watched slots.
        self.slots = slots
        # Keys mode: the keys this subscriber read, oldest first (see table.py).
        self.tracked: dict[bytes, int] = {}
        self.outbox = Outbox(queue_max)
        # Called when the outbox stops being empty, or when the subscription is closed.
        self.wake = wake
        self.closed = False

    def __repr__(self) -> str:
        return f"Subscriber({self.id[:8]}, {self.mode.name.lower()})"


@dataclass
class TrackingStats:
    """Counters for the Info RPC, as plain ints."""

    # Messages written to subscription streams, and keys they invalidated.
    messages: int = 0
    invalidated_keys: int = 0
    # Subscriptions opened since start.
    subscriptions: int = 0
    # Overflows of subscriptions already closed (open ones count in their outbox).
    overflows_closed: int = 0


class TrackingHub:
    """Every subscription of one node, fed by the node's keyspace."""

    def __init__(
        self,
        keyspace: Keyspace,
        limits: TrackingLimits | None = None,
        new_id: Callable[[], str] = lambda: secrets.token_hex(16),
    ) -> None:
        self.keyspace = keyspace
        self.limits = limits or TrackingLimits()
        self.table: TrackingTable[Subscriber] = TrackingTable(
            self.limits.max_keys, self.limits.max_keys_per_subscriber
        )
        self.subscribers: dict[str, Subscriber] = {}
        self.stats = TrackingStats()
        self._new_id = new_id
        self._by_slot = self.table.by_slot
        # Broadcast subscribers per slot; an empty tuple costs one falsy check.
        self._watchers: list[tuple[Subscriber, ...]] = [()] * SLOT_COUNT
        # Slots this node serves (1) as last told; a slot going from 1 to 0 is lost.
        self._served = bytearray(b"\x01") * SLOT_COUNT

    # ---- subscriptions -------------------------------------------------------------

    def subscribe(
        self, mode: Mode, slots: Iterable[int] | None, wake: Callable[[], None]
    ) -> Subscriber:
        """Open a subscription; ``slots`` (broadcast mode) None or empty means every slot."""
        watched: tuple[int, ...] = ()
        if mode is Mode.BROADCAST:
            watched = tuple(sorted(set(slots))) if slots else tuple(ALL_SLOTS)
        sub = Subscriber(self._new_id(), mode, watched, self.limits.queue_max, wake)
        watchers = self._watchers
        for slot in watched:
            watchers[slot] = (*watchers[slot], sub)
        self.subscribers[sub.id] = sub
        self.stats.subscriptions += 1
        if mode is Mode.KEYS:
            self.table.attach(sub)
        if len(self.subscribers) == 1:
            self.keyspace.add_listener(self)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        """Close ``sub`` and forget its state; its index entries go to :meth:`release`."""
        if self.subscribers.pop(sub.id, None) is None:
            return
        sub.closed = True
        self.stats.overflows_closed += sub.outbox.overflows
        watchers = self._watchers
        for slot in sub.slots:
            watchers[slot] = tuple(s for s in watchers[slot] if s is not sub)
        self.table.detach(sub)
        sub.outbox = Outbox(1)  # drop what it had pending
        if not self.subscribers:
            self.keyspace.remove_listener(self)
        sub.wake()

    def close_all(self) -> None:
        """End every subscription (the node is shutting down) and release all their state."""
        for sub in list(self.subscribers.values()):
            self.unsubscribe(sub)
        while self.table.release(1 << 16):
            pass

    def get(self, sub_id: str) -> Subscriber | None:
        """The open subscription with this id."""
        return self.subscribers.get(sub_id)

    def release(self, budget: int) -> bool:
        """Release some departed entries from the tracking table; True if more remain."""
        return self.table.release(budget)

    # ---- reads ---------------------------------------------------------------------

    def track(self, sub: Subscriber, slot: int, key: bytes) -> None:
        """``sub`` is reading ``key`` here now: invalidate it on its next change.

        The read proves this node serves ``slot``; noting it makes sure the
        loss of the slot is reported even if it was gained and lost between
        two :meth:`set_served` calls.
        """
        self._served[slot] = 1
        if sub.mode is not Mode.KEYS:
            return
        for victim, keys in self.table.track(sub, slot, key):
            for evicted in keys:
                self._queue_key(victim, evicted)

    # ---- keyspace listener ---------------------------------------------------------

    def key_set(self, slot: int, key: bytes, value: bytes, deadline: int) -> None:
        """A key was written."""
        self._changed(slot, key)

    def key_removed(self, slot: int, key: bytes, cause: RemovalCause) -> None:
        """A key was deleted, expired or evicted."""
        self._changed(slot, key)

    def deadline_set(self, slot: int, key: bytes, deadline: int) -> None:
        """A key's TTL changed (Redis invalidates on EXPIRE and PERSIST too)."""
        self._changed(slot, key)

    def _changed(self, slot: int, key: bytes) -> None:
        # The write path of every change while anyone subscribes: keep it lean.
        if self._by_slot[slot]:
            for sub in self.table.take(slot, key):
                if sub.outbox.add_key(key):
                    sub.wake()
        for sub in self._watchers[slot]:
            if sub.outbox.add_key(key):
                sub.wake()

    def _queue_key(self, sub: Subscriber, key: bytes) -> None:
        if sub.outbox.add_key(key):
            sub.wake()

    # ---- slot ownership ------------------------------------------------------------

    def slots_lost(self, slots: Iterable[int]) -> None:
        """This node stopped serving ``slots``: invalidate what subscribers hold of them.

        Slots already known as not served are skipped, so hearing of a loss
        twice (the membership event, then the next :meth:`set_served`) sends
        one message.
        """
        served = self._served
        lost = [s for s in slots if served[s]]
        for slot in lost:
            served[slot] = 0
        self._invalidate_slots(lost)

    def set_served(self, ranges: Iterable[tuple[int, int]]) -> list[int]:
        """The node now serves exactly ``ranges`` (inclusive); invalidate the slots lost."""
        now = bytearray(SLOT_COUNT)
        for start, end in ranges:
            now[start : end + 1] = b"\x01" * (end - start + 1)
        before = self._served
        lost = [s for s in ALL_SLOTS if before[s] and not now[s]]
        self._served = now
        self._invalidate_slots(lost)
        return lost

    def serves(self, slot: int) -> bool:
        """Whether ``slot`` was served here as last told."""
        return bool(self._served[slot])

    def _invalidate_slots(self, slots: list[int]) -> None:
        if not slots:
            return
        table = self.table
        per_sub: dict[Subscriber, list[int]] = {}
        for slot in slots:
            if self._by_slot[slot]:
                for sub, keys in table.take_slot(slot).items():
                    for key in keys:
                        self._queue_key(sub, key)
            for sub in self._watchers[slot]:
                per_sub.setdefault(sub, []).append(slot)
        for sub, lost in per_sub.items():
            if sub.outbox.add_slots(lost):
                sub.wake()

    # ---- messages ------------------------------------------------------------------

    def next_batch(self, sub: Subscriber) -> Batch | None:
        """The next message for ``sub``'s stream, or None when nothing is pending.

        A flush also resets the subscriber's registrations, at the moment the
        message is handed to the stream: a read registered before then is
        covered by the flush (the client drops its reply or its entry), and a
        read registered after then is kept.
        """
        batch = sub.outbox.take()
        if batch is None:
            return None
        if batch.flush:
            self.table.reset(sub)
        self.stats.messages += 1
        self.stats.invalidated_keys += len(batch.keys)
        return batch

    def first_seq(self, sub: Subscriber) -> int:
        """Number the stream's first message (the one naming the subscription)."""
        self.stats.messages += 1
        return sub.outbox.next_seq()

    # ---- reporting -----------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """The ``tracking.*`` counters of the Info RPC."""
        subs = self.subscribers.values()
        stats = self.stats
        return {
            "tracking.subscribers": len(self.subscribers),
            "tracking.subscribers.broadcast": sum(1 for s in subs if s.mode is Mode.BROADCAST),
            "tracking.keys": self.table.size,
            "tracking.evictions": self.table.evictions,
            "tracking.messages": stats.messages,
            "tracking.invalidated_keys": stats.invalidated_keys,
            "tracking.overflows": stats.overflows_closed + sum(s.outbox.overflows for s in subs),
            "tracking.subscriptions": stats.subscriptions,
        }
