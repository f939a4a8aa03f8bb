"""What one subscriber has yet to be told: pending invalidations, batching and the queue bound.

Pure state, no asyncio. The keyspace listener adds keys and slots as they
change; the subscriber's stream takes one :class:`Batch` at a time and
writes it. Everything that changed while the previous message was being
written therefore leaves as one message, which is how a burst of writes in
one event-loop turn (an MSet of 1000 keys) costs one message rather than
1000 (ARCHITECTURE §7).

Sequence numbers are assigned when a batch is taken, so the messages a
subscriber receives are numbered 1, 2, 3, ... without gaps. Nothing is ever
dropped silently: when more is pending than the bound allows, the pending
keys are replaced by one *flush* (drop everything), which the client
applies to its whole near cache.
"""

from __future__ import annotations

from dataclasses import dataclass

# One message carries at most this many keys and about this many key bytes,
# so that it stays far below any client's receive limit (gRPC's default is
# 4 MiB) whatever the key sizes.
MAX_KEYS_PER_MESSAGE = 4096
MAX_BYTES_PER_MESSAGE = 1 << 20


@dataclass(frozen=True, slots=True)
class Batch:
    """One message's worth of invalidations, numbered."""

    seq: int
    keys: list[bytes]
    slots: list[int]
    flush: bool


class Outbox:
    """Invalidations waiting for one subscriber, bounded by ``limit`` pending entries."""

    __slots__ = ("_bytes", "_keys", "_slots", "flush_pending", "limit", "overflows", "seq")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the invalidation queue must hold at least one entry")
        self.limit = limit
        # The last sequence number handed out; the first message is 1.
        self.seq = 0
        self.overflows = 0
        # A dict, not a set: it keeps the order keys changed in, and a key
        # that changes again before the message leaves is sent once.
        self._keys: dict[bytes, None] = {}
        self._bytes = 0
        self._slots: set[int] = set()
        self.flush_pending = False

    def __len__(self) -> int:
        return len(self._keys) + len(self._slots)

    @property
    def empty(self) -> bool:
        """Nothing is waiting to be sent."""
        return not (self._keys or self._slots or self.flush_pending)

    def add_key(self, key: bytes) -> bool:
        """Queue ``key``; return True when the outbox was empty (the stream must be woken)."""
        keys = self._keys
        if self.flush_pending or key in keys:
            return False
        was_empty = not keys and not self._slots
        if len(keys) + len(self._slots) >= self.limit:
            self._overflow()
            return was_empty
        keys[key] = None
        self._bytes += len(key)
        return was_empty

    def add_slots(self, slots: list[int]) -> bool:
        """Queue "drop every key of these slots"; return True when the outbox was empty."""
        if self.flush_pending or not slots:
            return False
        was_empty = not self._keys and not self._slots
        self._slots.update(slots)
        if len(self._keys) + len(self._slots) > self.limit:
            self._overflow()
        return was_empty

    def add_flush(self) -> bool:
        """Queue "drop everything"; what was pending is covered by it and discarded."""
        was_empty = self.empty
        self._keys = {}
        self._bytes = 0
        self._slots = set()
        self.flush_pending = True
        return was_empty

    def next_seq(self) -> int:
        """Number a message that carries no invalidation (the stream's first one)."""
        self.seq += 1
        return self.seq

    def take(
        self, max_keys: int = MAX_KEYS_PER_MESSAGE, max_bytes: int = MAX_BYTES_PER_MESSAGE
    ) -> Batch | None:
        """The next message, or None when nothing is pending.

        A flush goes out alone. Otherwise the message carries every pending
        slot and as many keys as fit (at least one); the rest wait for the
        next message.
        """
        if self.flush_pending:
            self.flush_pending = False
            return Batch(self.next_seq(), [], [], True)
        keys = self._keys
        if not keys and not self._slots:
            return None
        if len(keys) <= max_keys and self._bytes <= max_bytes:
            taken = list(keys)
            self._keys = {}
            self._bytes = 0
        else:
            taken = []
            size = 0
            for key in keys:
                if taken and (len(taken) >= max_keys or size + len(key) > max_bytes):
                    break
                taken.append(key)
                size += len(key)
            for key in taken:
                del keys[key]
            self._bytes -= size
        slots = sorted(self._slots)
        self._slots = set()
        return Batch(self.next_seq(), taken, slots, False)

    def _overflow(self) -> None:
        self.overflows += 1
        self.add_flush()
