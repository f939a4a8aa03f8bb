"""The near cache's bookkeeping: values read from nodes, kept here, dropped on the node's word.

No I/O happens here. The Subscribe streams live in :mod:`slotcache._invalidations`
and call :meth:`NearCache.on_message` / :meth:`NearCache.lost`; the core
(:mod:`slotcache._core`) calls :meth:`NearCache.track` before it sends a
read and :meth:`NearCache.fill` when the reply is back. The algorithm is the
one of docs/near-cache-protocol.md §5:

- Everything is partitioned by the node a value was read from, because a
  node can only report the changes it applies: its stream breaking (or a
  gap, or a ``flush``) says nothing about other nodes' values.
- A read may be cached only when it was sent under the node's *current*
  subscription, and only if no invalidation for its key (or flush of its
  node) arrived while it was in flight: a :class:`Ticket` (the placeholder)
  is registered before the request leaves and voided by such an
  invalidation. The node registers the read before replying, so any change
  the reply does not show is invalidated afterwards, on the stream.
- Entries also expire on their own: after the key's server TTL (read with a
  ``Ttl`` in the same batch as the ``Get``) and after ``max_staleness_ms``,
  because a node reports an expiry only when it *removes* the key, which
  its sampler may do well after the deadline.

One lock guards everything: the blocking client's threads read while a
stream thread invalidates. A hit holds it for a dict lookup and an LRU move.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from slotcache._stats import ClientStats
from slotcache.contract import key_slot
from slotcache.v1 import cache_pb2 as pb

__all__ = [
    "ENTRY_OVERHEAD",
    "NOT_CACHED",
    "NearCache",
    "NearCacheConfig",
    "NearCacheSeam",
    "Ticket",
]

NearCacheMode = Literal["keys", "broadcast"]

#: Bytes an entry is charged beyond its key and value (dict slot, entry object,
#: the bytes objects' headers): ``max_bytes`` bounds an estimate of real memory,
#: not just the payload, so a cache of tiny values stays bounded too.
ENTRY_OVERHEAD = 200


class _NotCached:
    """The "ask the node" answer of :meth:`NearCache.cached` (None means "known missing")."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_CACHED"


NOT_CACHED: Any = _NotCached()


@dataclass(frozen=True, slots=True)
class NearCacheConfig:
    """How large the near cache may grow and how long an entry may be served.

    ``max_entries`` and ``max_bytes`` bound it together (least recently used
    entries go first; bytes are key + value + :data:`ENTRY_OVERHEAD`).
    ``max_staleness_ms`` bounds every entry's age (None: only the key's
    server TTL and invalidations end it). ``mode="keys"`` asks each node to
    report changes to the keys this client read; ``"broadcast"`` to report
    every change on the node (no per-key state on the node, more messages).
    """

    max_entries: int = 10_000
    max_bytes: int = 64 * 1024 * 1024
    max_staleness_ms: int | None = 60_000
    mode: NearCacheMode = "keys"

    def __post_init__(self) -> None:
        if self.max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        if self.max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        if self.max_staleness_ms is not None and self.max_staleness_ms <= 0:
            raise ValueError("max_staleness_ms must be > 0 (or None)")
        if self.mode not in ("keys", "broadcast"):
            raise ValueError(f"mode must be 'keys' or 'broadcast', not {self.mode!r}")

    def subscribe_request(self) -> pb.SubscribeRequest:
        """What to ask each node for (broadcast watches every slot the node serves)."""
        mode = pb.TRACKING_MODE_BROADCAST if self.mode == "broadcast" else pb.TRACKING_MODE_KEYS
        return pb.SubscribeRequest(mode=mode)


class _Partition:
    """What the client knows about one node's subscription, and which entries came through it."""

    __slots__ = ("address", "generation", "keys", "last_seq", "node_id", "track")

    def __init__(self, address: str) -> None:
        self.address = address
        #: The subscription id to send as ``slotcache-track``; None while not subscribed.
        self.track: str | None = None
        self.node_id = ""
        self.last_seq = 0
        #: Bumped by every flush: tickets taken before it can no longer fill.
        self.generation = 0
        self.keys: set[bytes] = set()


class _Entry:
    __slots__ = ("expires", "partition", "size", "value")

    def __init__(
        self, value: bytes | None, expires: float, size: int, partition: _Partition
    ) -> None:
        self.value = value
        self.expires = expires
        self.size = size
        self.partition = partition


class Ticket:
    """The placeholder of one tracked read in flight (``track``: the id it is sent under)."""

    __slots__ = ("generation", "key", "partition", "started", "track", "void")

    def __init__(self, key: bytes, partition: _Partition, track: str, started: float) -> None:
        self.key = key
        self.partition = partition
        self.generation = partition.generation
        self.track = track
        self.started = started
        self.void = False


class NearCacheSeam(Protocol):
    """What the core needs from a near cache (tests plug simpler ones in)."""

    def lookup(self, key: bytes) -> pb.GetReply | None:
        """The reply to serve for ``key`` (found or known missing), or None to ask the node."""
        ...

    def track(self, key: bytes, address: str) -> Ticket | None:
        """A placeholder for a read of ``key`` about to go to ``address``; None: do not track it."""
        ...

    def fill(self, ticket: Ticket, reply: pb.GetReply, ttl: pb.TtlReply) -> None:
        """The tracked read (and the Ttl sent with it) came back: cache it unless voided."""
        ...

    def release(self, ticket: Ticket) -> None:
        """The tracked read failed: forget its placeholder."""
        ...

    def forget(self, address: str, track: str) -> None:
        """The node does not know subscription ``track`` (NO_SUBSCRIPTION): stop using it."""
        ...

    def invalidate(self, keys: Sequence[bytes]) -> None:
        """Forget ``keys``: this client is writing them."""
        ...


class NearCache:
    """An LRU of values by key, partitioned by node, kept correct by the nodes' invalidations.

    ``on_new_node(address)`` is called (outside the lock) the first time a
    read goes to a node, so the I/O layer subscribes to it; ``on_forget``
    when a node refused a subscription id, so it resubscribes at once.
    ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        config: NearCacheConfig,
        stats: ClientStats | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_new_node: Callable[[str], None] | None = None,
        on_forget: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.stats = stats if stats is not None else ClientStats()
        self.on_new_node = on_new_node
        self.on_forget = on_forget
        self._clock = clock
        staleness = config.max_staleness_ms
        self._max_age = float("inf") if staleness is None else staleness / 1000.0
        self._max_entries = config.max_entries
        self._max_bytes = config.max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._bytes = 0
        self._partitions: dict[str, _Partition] = {}
        self._pending: dict[bytes, list[Ticket]] = {}

    # ---- inspection ----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """The estimated bytes held (what ``max_bytes`` bounds)."""
        return self._bytes

    def subscriptions(self) -> dict[str, str]:
        """``address: subscription id`` of every node currently subscribed to."""
        with self._lock:
            return {a: p.track for a, p in self._partitions.items() if p.track is not None}

    def clear(self) -> None:
        """Drop every entry and void every read in flight (subscriptions are kept)."""
        with self._lock:
            for partition in self._partitions.values():
                self._flush(partition, count=False)

    # ---- the read path -------------------------------------------------------------

    def cached(self, key: bytes) -> Any:
        """The stored bytes for ``key`` (None: known missing), or :data:`NOT_CACHED`.

        The hit path of ``Client.get``: one dict lookup, an age check, an LRU move.
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return NOT_CACHED
            if self._clock() >= entry.expires:
                self._drop(key, entry)
                return NOT_CACHED
            self._entries.move_to_end(key)
            return entry.value

    def lookup(self, key: bytes) -> pb.GetReply | None:
        """:meth:`cached` as the GetReply the core's read path parses."""
        value = self.cached(key)
        if value is NOT_CACHED:
            return None
        if value is None:
            return pb.GetReply(found=False)
        return pb.GetReply(found=True, value=value)

    def track(self, key: bytes, address: str) -> Ticket | None:
        """Put a placeholder for ``key`` before a read goes to ``address``.

        None when the node has no subscription yet (the read then goes
        untracked and is not cached); the first read of a node asks the I/O
        layer to subscribe to it.
        """
        new = False
        with self._lock:
            partition = self._partitions.get(address)
            if partition is None:
                partition = self._partitions[address] = _Partition(address)
                new = True
            track = partition.track
            ticket = None
            if track is not None:
                ticket = Ticket(key, partition, track, self._clock())
                pending = self._pending.get(key)
                if pending is None:
                    self._pending[key] = [ticket]
                else:
                    pending.append(ticket)
        if new and self.on_new_node is not None:
            self.on_new_node(address)
        return ticket

    def fill(self, ticket: Ticket, reply: pb.GetReply, ttl: pb.TtlReply) -> None:
        """Cache what a tracked read returned, unless something voided it meanwhile.

        ``ttl`` was read in the same batch. If it disagrees with ``reply`` on
        whether the key exists, the key changed between the two and an
        invalidation is on its way: nothing is cached. The entry's lifetime
        counts from when the read was sent, so it never outlives the
        server's TTL.
        """
        with self._lock:
            self._unpend(ticket)
            partition = ticket.partition
            if (
                ticket.void
                or partition.generation != ticket.generation
                or partition.track != ticket.track
                or reply.found != ttl.found
            ):
                return
            lifetime = self._max_age
            if ttl.found and ttl.has_ttl:
                lifetime = min(lifetime, ttl.ttl_ms / 1000.0)
            expires = ticket.started + lifetime
            if expires <= self._clock():
                return
            key = ticket.key
            value = reply.value if reply.found else None
            size = len(key) + (len(value) if value is not None else 0) + ENTRY_OVERHEAD
            if size > self._max_bytes:
                return
            old = self._entries.get(key)
            if old is not None:
                self._drop(key, old)
            self._entries[key] = _Entry(value, expires, size, partition)
            partition.keys.add(key)
            self._bytes += size
            self._evict()

    def release(self, ticket: Ticket) -> None:
        """Forget the placeholder of a read that failed."""
        with self._lock:
            self._unpend(ticket)

    def forget(self, address: str, track: str) -> None:
        """The node refused ``track`` (NO_SUBSCRIPTION): flush the node and stop tracking with it.

        The stream carrying ``track`` is dead or about to be; ``on_forget``
        lets the I/O layer replace it without waiting to notice.
        """
        with self._lock:
            partition = self._partitions.get(address)
            if partition is None or partition.track != track:
                return
            partition.track = None
            self._flush(partition)
        if self.on_forget is not None:
            self.on_forget(address)

    def invalidate(self, keys: Sequence[bytes]) -> None:
        """Drop ``keys`` and void their reads in flight: this client writes them.

        Called both before the write is sent and after it completes, so a
        read that raced the write cannot leave the old value behind for this
        client's next read (read-your-writes without waiting for the stream).
        """
        with self._lock:
            self._drop_keys(keys)

    # ---- the Subscribe stream ------------------------------------------------------

    def on_message(self, address: str, message: pb.Invalidation) -> None:
        """Apply one message of ``address``'s Subscribe stream (flush, then slots, then keys)."""
        with self._lock:
            partition = self._partitions.get(address)
            if partition is None:
                partition = self._partitions[address] = _Partition(address)
            if message.seq == 1:
                # A new stream: whatever was cached went with the old one (lost() flushed it).
                partition.track = message.subscription_id
                partition.node_id = message.node_id
                partition.last_seq = 1
                return
            if partition.track is None:
                return  # a stream we already gave up on
            gap = message.seq != partition.last_seq + 1
            partition.last_seq = message.seq
            if gap or message.flush:
                self._flush(partition)
            if message.slots:
                self._drop_slots(partition, [(r.start, r.end) for r in message.slots])
            if message.keys:
                self.stats.near_cache_invalidations += len(message.keys)
                self._drop_keys(message.keys)

    def lost(self, address: str) -> None:
        """``address``'s stream ended: flush what came through it; track nothing until the next."""
        with self._lock:
            partition = self._partitions.get(address)
            if partition is None:
                return
            was_subscribed = partition.track is not None
            partition.track = None
            partition.last_seq = 0
            self._flush(partition, count=was_subscribed)

    # ---- internals (lock held) ---------------------------------------------------

    def _unpend(self, ticket: Ticket) -> None:
        pending = self._pending.get(ticket.key)
        if pending is None:
            return
        try:
            pending.remove(ticket)
        except ValueError:
            return
        if not pending:
            del self._pending[ticket.key]

    def _drop(self, key: bytes, entry: _Entry) -> None:
        del self._entries[key]
        entry.partition.keys.discard(key)
        self._bytes -= entry.size

    def _drop_keys(self, keys: Iterable[bytes]) -> None:
        entries, pending = self._entries, self._pending
        for key in keys:
            entry = entries.get(key)
            if entry is not None:
                self._drop(key, entry)
            tickets = pending.get(key)
            if tickets is not None:
                for ticket in tickets:
                    ticket.void = True

    def _drop_slots(self, partition: _Partition, ranges: list[tuple[int, int]]) -> None:
        def moved(key: bytes) -> bool:
            slot = key_slot(key)
            return any(start <= slot <= end for start, end in ranges)

        for key in [k for k in partition.keys if moved(k)]:
            self._drop(key, self._entries[key])
        for key, tickets in self._pending.items():
            if moved(key):
                for ticket in tickets:
                    if ticket.partition is partition:
                        ticket.void = True

    def _flush(self, partition: _Partition, count: bool = True) -> None:
        entries = self._entries
        for key in partition.keys:
            self._bytes -= entries.pop(key).size
        partition.keys.clear()
        partition.generation += 1
        if count:
            self.stats.near_cache_flushes += 1

    def _evict(self) -> None:
        entries = self._entries
        while len(entries) > self._max_entries or self._bytes > self._max_bytes:
            key, entry = entries.popitem(last=False)
            entry.partition.keys.discard(key)
            self._bytes -= entry.size
