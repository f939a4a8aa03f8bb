"""The keyspace store: keys, values, TTLs, recency and memory accounting.

Layout, chosen for bytes per key (measured, see docs/keyspace.md):

- one plain dict per slot maps key to value. The per-slot dicts are the
  per-slot key index that migration and replication need, ``len()`` of each is
  the per-slot key count, and their total overhead equals one big dict's.
- keys with a TTL are also in a :class:`TtlIndex` (list + array), so sampling
  them is O(1).
- under an LRU policy each slot dict is kept in recency order (a read moves
  the key to the end), and a parallel per-slot dict holds a coarse access
  stamp. The stamp is an int object shared by every key touched in the same
  tick, so it costs a dict slot and nothing more.
- under an LFU policy a parallel per-slot dict holds an 8-bit logarithmic
  counter; small ints are cached by CPython, so again only the dict slot costs.

All times are absolute wall-clock milliseconds supplied by an injected clock,
so tests drive expiry deterministically and deadlines mean the same thing on
every node.
"""

from __future__ import annotations

import enum
import random as _random
import time
from array import array
from binascii import crc_hqx
from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from itertools import islice

from slotcache.contract import SLOT_COUNT, key_slot

from ..keyspace import memory
from ..keyspace.errors import NotAnInteger, OutOfMemory, OutOfRange
from ..keyspace.events import KeyspaceListener, RemovalCause
from ..keyspace.eviction import LFU_INIT, EvictionPolicy, lfu_decay, lfu_increment
from ..keyspace.expiry import CycleStats, SamplerConfig, run_cycle
from ..keyspace.slot_set import SlotSet
from ..keyspace.ttl_index import TtlIndex

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_MAX_INT64_DIGITS = 20  # "-9223372036854775808"
_LRU_TICK_MS = 100
_EVICTION_ATTEMPTS = 64


def wall_clock_ms() -> int:
    """Milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def _deadline_after(now: int, ttl_ms: int) -> int:
    """The absolute deadline ``ttl_ms`` from ``now``, or 0 (no TTL) when ``ttl_ms`` is 0."""
    if ttl_ms < 0:
        raise ValueError(f"ttl_ms must not be negative (got {ttl_ms})")
    if ttl_ms == 0:
        return 0
    deadline = now + ttl_ms
    if deadline > INT64_MAX:
        raise ValueError(f"ttl_ms {ttl_ms} is too large: the deadline leaves the int64 range")
    return deadline


class Condition(enum.IntEnum):
    """When a write applies; values match ``slotcache.v1.SetCondition``."""

    ALWAYS = 0
    IF_ABSENT = 1
    IF_PRESENT = 2


_IF_ABSENT, _IF_PRESENT = Condition.IF_ABSENT, Condition.IF_PRESENT
# key_slot's arithmetic, inlined where every request pays for the call.
_SLOT_MASK = SLOT_COUNT - 1


@dataclass
class KeyspaceStats:
    """Hot-path counters, kept as plain ints and read by the Info RPC."""

    hits: int = 0
    misses: int = 0
    expired_lazy: int = 0
    expired_active: int = 0
    evicted: int = 0


def parse_int64(value: bytes) -> int:
    """Parse a value the way Redis's INCR does: canonical base-10, signed 64-bit.

    Leading zeros, "+", "-0" and whitespace are refused, so a value that
    parses always prints back to the same bytes.
    """
    negative = value[:1] == b"-"
    digits = value[1:] if negative else value
    if (
        len(value) > _MAX_INT64_DIGITS
        or not digits.isdigit()
        or (digits[:1] == b"0" and (len(digits) > 1 or negative))
    ):
        raise NotAnInteger("value is not an integer")
    n = int(digits)
    n = -n if negative else n
    if not INT64_MIN <= n <= INT64_MAX:
        raise NotAnInteger("value is not an integer or out of the signed 64-bit range")
    return n


class Keyspace:
    """All keys of one node. Single-threaded by design: the event loop owns it."""

    def __init__(
        self,
        *,
        maxmemory: int = 0,
        policy: EvictionPolicy = EvictionPolicy.NOEVICTION,
        samples: int = 5,
        sampler: SamplerConfig | None = None,
        lfu_log_factor: int = 10,
        lfu_decay_minutes: int = 1,
        clock_ms: Callable[[], int] = wall_clock_ms,
        random: Callable[[], float] | None = None,
    ) -> None:
        if maxmemory < 0:
            raise ValueError("maxmemory must be >= 0 (0 means no limit)")
        if samples < 1:
            raise ValueError("eviction samples must be >= 1")
        self.maxmemory = maxmemory
        self.policy = policy
        self.samples = samples
        self.sampler = sampler or SamplerConfig()
        self.stats = KeyspaceStats()
        self.used_memory = 0
        self.key_count = 0
        self._clock = clock_ms
        self._random = random or _random.Random().random
        self._data: list[dict[bytes, bytes]] = [{} for _ in range(SLOT_COUNT)]
        self._nonempty = SlotSet()
        self._ttl = TtlIndex()
        self._ttl_keys = self._ttl.keys
        self._lru: list[dict[bytes, int]] | None = None
        self._lfu: list[dict[bytes, int]] | None = None
        self._lfu_log_factor = lfu_log_factor
        self._lfu_decay_ms = lfu_decay_minutes * 60_000
        self._lfu_decayed_at = array("q", [clock_ms()]) * SLOT_COUNT
        self._stamp = -1
        self._per_key_extra = 0
        # The memory estimate per slot, for rebalancing by memory.
        self._slot_bytes = array("q", [0]) * SLOT_COUNT
        # Told of every change (replication, invalidation); none costs nothing.
        self._listeners: tuple[KeyspaceListener, ...] = ()
        # A primary deletes keys whose deadline passed. A replica only hides
        # them: its primary sends the delete, so both stay identical.
        self.expire_keys = True
        if policy.lru:
            self._lru = [{} for _ in range(SLOT_COUNT)]
            self._per_key_extra = memory.DICT_SLOT
        elif policy.lfu:
            self._lfu = [{} for _ in range(SLOT_COUNT)]
            self._per_key_extra = memory.DICT_SLOT

    def add_listener(self, listener: KeyspaceListener) -> None:
        """Tell ``listener`` of every change from now on (adding it twice is a no-op)."""
        if listener not in self._listeners:
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: KeyspaceListener) -> None:
        """Stop telling ``listener`` (a no-op when it is not registered)."""
        self._listeners = tuple(x for x in self._listeners if x is not listener)

    # ---- reads -------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        """Return the value, or None if the key is missing or expired.

        Every read of every protocol comes here, so the slot and the lookup
        are inline: a key without a TTL costs no further call.
        """
        slot = crc_hqx(key, 0) & _SLOT_MASK if b"{" not in key else key_slot(key)
        value = self._data[slot].get(key)
        if value is not None and key in self._ttl_keys:
            value = self._live(slot, key)
        if value is None:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        if self._lru is not None or self._lfu is not None:
            self._touch(slot, key, value)
        return value

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """Return values in the order of ``keys`` (MGET, and runs of pipelined GETs).

        A run of pipelined GETs is the busiest loop a node has, so the usual
        case (no hash tags, no eviction policy to keep up) is one
        comprehension, and only keys with a TTL are looked at again.
        """
        if self._lru is not None or self._lfu is not None or b"{" in b"".join(keys):
            get = self.get  # each read moves its key in the policy's order, or hashes a tag
            return [get(k) for k in keys]
        data = self._data
        values = [data[crc_hqx(k, 0) & _SLOT_MASK].get(k) for k in keys]
        ttl_keys = self._ttl_keys
        if ttl_keys and not ttl_keys.isdisjoint(keys):
            live = self._live
            values = [
                live(crc_hqx(k, 0) & _SLOT_MASK, k) if v is not None and k in ttl_keys else v
                for k, v in zip(keys, values, strict=True)
            ]
        misses = values.count(None)
        self.stats.misses += misses
        self.stats.hits += len(values) - misses
        return values

    def exists(self, key: bytes) -> bool:
        """Report whether the key is held; does not count as an access."""
        return self._live(key_slot(key), key) is not None

    def pttl(self, key: bytes) -> int:
        """Remaining TTL in ms; -1 if the key has no TTL, -2 if it does not exist."""
        if self._live(key_slot(key), key) is None:
            return -2
        deadline = self._ttl.deadline(key)
        if deadline == 0:
            return -1
        return max(deadline - self._clock(), 0)

    def deadline(self, key: bytes) -> int:
        """Absolute expiry time in ms, or 0 for no TTL (or a missing key)."""
        return self._ttl.deadline(key)

    # ---- writes ------------------------------------------------------------

    def set(
        self,
        key: bytes,
        value: bytes,
        *,
        ttl_ms: int = 0,
        condition: Condition = Condition.ALWAYS,
        keep_ttl: bool = False,
    ) -> bool:
        """Write a key; return False when the condition left it unwritten."""
        slot = key_slot(key)
        old = self._live(slot, key)
        if (condition is _IF_ABSENT and old is not None) or (
            condition is _IF_PRESENT and old is None
        ):
            return False
        if keep_ttl:
            deadline = self._ttl.deadline(key)
        elif ttl_ms:
            deadline = _deadline_after(self._clock(), ttl_ms)
        else:
            deadline = 0
        if self.maxmemory:
            self._make_room(self._growth(key, value, old, key in self._ttl, deadline), (key,))
        self._store(slot, key, value, deadline, old)
        return True

    def put_many(self, keys: Sequence[bytes], values: Sequence[bytes]) -> None:
        """Write keys with no TTL and no condition, in order: plain SETs, the most common write.

        Overwriting a live key that has no TTL, with no memory limit and no
        eviction policy to keep up, needs only the store and the listeners.
        A run where every key is such an overwrite by a value of the same
        size (a cache refreshing its entries) is written in comprehensions;
        otherwise each key is looked at in turn, and every key that is new,
        has a TTL or a hash tag takes :meth:`set`'s way. With a memory limit,
        a key that does not fit raises :class:`OutOfMemory` and the keys
        after it are not written.
        """
        data, ttl_keys, listeners = self._data, self._ttl_keys, self._listeners
        if (
            len(keys) > 1
            and not self.maxmemory
            and self._lru is None
            and self._lfu is None
            and b"{" not in b"".join(keys)
        ):
            slots = [crc_hqx(k, 0) & _SLOT_MASK for k in keys]
            # Each key's slot dict, looked up once (in C) for the read and the write.
            dicts = list(map(data.__getitem__, slots))
            olds = list(map(dict.get, dicts, keys))
            if (
                None not in olds
                and (not ttl_keys or ttl_keys.isdisjoint(keys))
                and list(map(len, olds)) == list(map(len, values))  # type: ignore[arg-type]  # no None
            ):
                for slot_data, key, value in zip(dicts, keys, values, strict=True):
                    slot_data[key] = value
                for listener in listeners:
                    for slot, key, value in zip(slots, keys, values, strict=True):
                        listener.key_set(slot, key, value, 0)
                return
        put = self.put
        for key, value in zip(keys, values, strict=True):
            put(key, value)

    def put(self, key: bytes, value: bytes) -> None:
        """One plain SET: see :meth:`put_many`."""
        if self.maxmemory or self._lru is not None or self._lfu is not None:
            self.set(key, value)
            return
        slot = crc_hqx(key, 0) & _SLOT_MASK if b"{" not in key else key_slot(key)
        slot_data = self._data[slot]
        old = slot_data.get(key)
        if old is None or key in self._ttl_keys:
            self.set(key, value)
            return
        slot_data[key] = value
        if len(old) != len(value):
            self._account(slot, memory.resized(len(old), len(value)))
        for listener in self._listeners:
            listener.key_set(slot, key, value, 0)

    def set_many(self, entries: Sequence[tuple[bytes, bytes, int, Condition, bool]]) -> list[bool]:
        """Apply several Sets as one unit: room is made for all before any is written.

        Each entry is ``(key, value, ttl_ms, condition, keep_ttl)``. Later entries
        see the effect of earlier ones, as if they ran one after another.
        """
        now = self._clock()
        plans: list[tuple[int, bytes, bytes, int] | None] = []
        # Value and deadline of each key as the earlier entries leave it.
        pending: dict[bytes, tuple[bytes, int]] = {}
        growth = 0
        for key, value, ttl_ms, condition, keep_ttl in entries:
            slot = key_slot(key)
            old: bytes | None
            if key in pending:
                old, old_deadline = pending[key]
            else:
                old = self._live(slot, key)
                old_deadline = self._ttl.deadline(key)
            if (condition is Condition.IF_ABSENT and old is not None) or (
                condition is Condition.IF_PRESENT and old is None
            ):
                plans.append(None)
                continue
            deadline = old_deadline if keep_ttl else _deadline_after(now, ttl_ms)
            growth += self._growth(key, value, old, old_deadline != 0, deadline)
            pending[key] = (value, deadline)
            plans.append((slot, key, value, deadline))
        self._make_room(growth, [p[1] for p in plans if p is not None])
        for plan in plans:
            if plan is not None:
                slot, key, value, deadline = plan
                self._store(slot, key, value, deadline, self._data[slot].get(key))
        return [p is not None for p in plans]

    def set_with_deadline(self, key: bytes, value: bytes, deadline: int) -> None:
        """Write a key with an absolute deadline (0 for none), as replication and migration do."""
        if not INT64_MIN <= deadline <= INT64_MAX:
            raise ValueError(f"deadline {deadline} is outside the signed 64-bit range")
        slot = key_slot(key)
        old = self._data[slot].get(key)
        self._make_room(self._growth(key, value, old, key in self._ttl, deadline), (key,))
        self._store(slot, key, value, deadline, old)

    def delete(self, key: bytes) -> bool:
        """Remove a key; return whether it was held."""
        slot = key_slot(key)
        if self._live(slot, key) is None:
            return False
        self._remove(slot, key, RemovalCause.DELETED)
        return True

    def discard(self, key: bytes) -> bool:
        """Remove a key even if it has logically expired, as a replica applying a delete must."""
        slot = key_slot(key)
        if key not in self._data[slot]:
            return False
        self._remove(slot, key, RemovalCause.DELETED)
        return True

    def set_deadline(self, key: bytes, deadline: int) -> bool:
        """Set a key's absolute deadline (0 removes it) whatever its state; False if missing."""
        slot = key_slot(key)
        if key not in self._data[slot]:
            return False
        self._apply_deadline(slot, key, deadline)
        return True

    def delete_many(self, keys: Iterable[bytes]) -> int:
        """Remove keys; return how many were held."""
        delete = self.delete
        return sum(1 for k in keys if delete(k))

    def expire(self, key: bytes, ttl_ms: int) -> bool:
        """Give an existing key a TTL (> 0); return whether the key exists."""
        if ttl_ms <= 0:
            raise ValueError("ttl_ms must be > 0")
        deadline = _deadline_after(self._clock(), ttl_ms)
        slot = key_slot(key)
        if self._live(slot, key) is None:
            return False
        self._apply_deadline(slot, key, deadline)
        return True

    def persist(self, key: bytes) -> bool:
        """Remove a key's TTL; return whether it had one."""
        slot = key_slot(key)
        if self._live(slot, key) is None or key not in self._ttl:
            return False
        self._apply_deadline(slot, key, 0)
        return True

    def _apply_deadline(self, slot: int, key: bytes, deadline: int) -> None:
        if deadline:
            if key not in self._ttl:
                self._account(slot, memory.TTL_ENTRY)
            self._ttl.set(key, deadline)
        elif self._ttl.discard(key):
            self._account(slot, -memory.TTL_ENTRY)
        for listener in self._listeners:
            listener.deadline_set(slot, key, deadline)

    def incr(self, key: bytes, delta: int) -> int:
        """Add ``delta`` to an integer value (missing counts as 0), keeping its TTL."""
        slot = key_slot(key)
        old = self._live(slot, key)
        current = 0 if old is None else parse_int64(old)
        result = current + delta
        if not INT64_MIN <= result <= INT64_MAX:
            raise OutOfRange("increment would overflow a signed 64-bit integer")
        value = str(result).encode()
        deadline = self._ttl.deadline(key)
        self._make_room(self._growth(key, value, old, deadline != 0, deadline), (key,))
        self._store(slot, key, value, deadline, old)
        return result

    # ---- expiry ------------------------------------------------------------

    def run_expiry_cycle(self, timer: Callable[[], float] = time.perf_counter) -> CycleStats:
        """Run one active expiry cycle within the sampler's CPU budget."""
        return run_cycle(self, self.sampler, self._clock(), timer)

    def ttl_key_count(self) -> int:
        """Number of keys that have a TTL."""
        return len(self._ttl)

    def expire_sample(self, n: int, now_ms: int) -> int:
        """Sample ``n`` keys that have a TTL, remove the expired ones, return how many."""
        due = self._ttl.sample_due(n, now_ms, self._random)
        for key in due:
            self._remove(key_slot(key), key, RemovalCause.EXPIRED)
        self.stats.expired_active += len(due)
        return len(due)

    # ---- per-slot views ----------------------------------------------------

    def slot_key_count(self, slot: int) -> int:
        """Keys held in ``slot`` (expired ones included until they are collected)."""
        return len(self._data[slot])

    def slot_keys(self, slot: int, limit: int | None = None) -> list[bytes]:
        """Up to ``limit`` keys of ``slot``, without scanning other slots."""
        return list(islice(self._data[slot], limit))

    def nonempty_slots(self) -> Iterator[int]:
        """Slots that hold at least one key, ascending."""
        return iter(self._nonempty)

    def slot_memory(self, slot: int) -> int:
        """The memory estimate of ``slot``'s entries, kept as they change."""
        return self._slot_bytes[slot]

    def slot_items(self, slot: int) -> list[tuple[bytes, bytes, int]]:
        """Every live ``(key, value, deadline)`` of ``slot``: an atomic snapshot for syncing.

        Copying one slot is one step of the event loop, so nothing changes
        under it; keys whose deadline has passed are left out.
        """
        now = self._clock()
        deadline_of = self._ttl.deadline
        items = []
        for key, value in list(self._data[slot].items()):
            deadline = deadline_of(key)
            if not deadline or deadline > now:
                items.append((key, value, deadline))
        return items

    def slot_columns(self, slot: int) -> tuple[list[bytes], list[bytes], list[int]]:
        """Like :meth:`slot_items`, as parallel key, value and deadline lists.

        A snapshot file stores columns; building them without a method call
        per key keeps a million-key save within its budget.
        """
        data = self._data[slot]
        keys = list(data)
        values = list(data.values())
        return _live_columns(keys, values, self._ttl.deadlines(keys), self._clock())

    def load_slot(
        self, slot: int, keys: Sequence[bytes], values: Sequence[bytes], deadlines: Sequence[int]
    ) -> int:
        """Fill an empty ``slot`` from a snapshot file at boot; return the keys kept.

        Loading a million keys one ``set_with_deadline`` at a time costs
        seconds; this builds the slot's dict in one go. It skips the memory
        limit and tells no listener, so it is only for a node that is not
        serving yet. Keys whose deadline has passed are dropped.
        """
        if self._data[slot] or self._listeners:
            raise ValueError("load_slot needs an empty slot and no listeners")
        keys, values, deadlines = _live_columns(keys, values, deadlines, self._clock())
        if not keys:
            return 0
        data = dict(zip(keys, values, strict=True))
        self._data[slot] = data
        self._nonempty.add(slot)
        self.key_count += len(data)
        extra = self._per_key_extra
        entry = memory.entry
        size = sum(entry(len(k), len(v), extra) for k, v in data.items())
        ttl = self._ttl
        for key, deadline in zip(keys, deadlines, strict=True):
            if deadline:
                ttl.set(key, deadline)
                size += memory.TTL_ENTRY
        self._account(slot, size)
        if self._lru is not None:
            stamp = self._lru_stamp()
            self._lru[slot] = dict.fromkeys(data, stamp)
        elif self._lfu is not None:
            self._lfu[slot] = dict.fromkeys(data, LFU_INIT)
        return len(data)

    def clear_slot(self, slot: int) -> int:
        """Remove every key of ``slot`` (a slot this node no longer serves); return how many."""
        keys = list(self._data[slot])
        for key in keys:
            self._remove(slot, key, RemovalCause.DELETED)
        return len(keys)

    # ---- internals ---------------------------------------------------------

    def _live(self, slot: int, key: bytes) -> bytes | None:
        """Look a key up, expiring it lazily if its deadline has passed."""
        value = self._data[slot].get(key)
        if value is None or key not in self._ttl_keys:
            return value
        deadline = self._ttl.deadline(key)
        if deadline <= self._clock():
            if self.expire_keys:
                self._remove(slot, key, RemovalCause.EXPIRED)
                self.stats.expired_lazy += 1
            return None
        return value

    def _touch(self, slot: int, key: bytes, value: bytes) -> None:
        """Record an access for the LRU or LFU policy."""
        if self._lru is not None:
            data = self._data[slot]
            del data[key]
            data[key] = value
            self._lru[slot][key] = self._lru_stamp()
        elif self._lfu is not None:
            counts = self._lfu[slot]
            self._decay_slot(slot)
            counts[key] = lfu_increment(counts[key], self._lfu_log_factor, self._random)

    def _lru_stamp(self) -> int:
        """The current coarse access time, as an int object shared within one tick."""
        tick = self._clock() // _LRU_TICK_MS
        if tick != self._stamp:
            self._stamp = tick
        return self._stamp

    def _decay_slot(self, slot: int) -> None:
        assert self._lfu is not None
        if not self._lfu_decay_ms:
            return
        now = self._clock()
        periods = (now - self._lfu_decayed_at[slot]) // self._lfu_decay_ms
        if periods > 0:
            counts = self._lfu[slot]
            for k, c in counts.items():
                counts[k] = lfu_decay(c, periods)
            self._lfu_decayed_at[slot] = now

    def _growth(
        self, key: bytes, value: bytes, old: bytes | None, had_ttl: bool, deadline: int
    ) -> int:
        """Estimated change in used memory if ``key``, now ``old``, were written."""
        if old is None:
            growth = memory.entry(len(key), len(value), self._per_key_extra)
        else:
            growth = memory.bytes_object(len(value)) - memory.bytes_object(len(old))
        if deadline and not had_ttl:
            growth += memory.TTL_ENTRY
        elif had_ttl and not deadline:
            growth -= memory.TTL_ENTRY
        return growth

    def _store(self, slot: int, key: bytes, value: bytes, deadline: int, old: bytes | None) -> None:
        data = self._data[slot]
        if old is None:
            if not data:
                self._nonempty.add(slot)
            self.key_count += 1
            grown = memory.entry(len(key), len(value), self._per_key_extra)
        else:
            grown = memory.resized(len(old), len(value))
            if self._lru is not None:
                del data[key]
        data[key] = value
        had_ttl = key in self._ttl_keys
        if deadline:
            if not had_ttl:
                grown += memory.TTL_ENTRY
            self._ttl.set(key, deadline)
        elif had_ttl:
            self._ttl.discard(key)
            grown -= memory.TTL_ENTRY
        self._account(slot, grown)
        if self._lru is not None:
            self._lru[slot][key] = self._lru_stamp()
        elif self._lfu is not None:
            counts = self._lfu[slot]
            if old is None:
                counts[key] = LFU_INIT
            else:
                self._decay_slot(slot)
                counts[key] = lfu_increment(counts[key], self._lfu_log_factor, self._random)
        for listener in self._listeners:
            listener.key_set(slot, key, value, deadline)

    def _account(self, slot: int, delta: int) -> None:
        self.used_memory += delta
        self._slot_bytes[slot] += delta

    def _remove(self, slot: int, key: bytes, cause: RemovalCause) -> None:
        data = self._data[slot]
        value = data.pop(key)
        if not data:
            self._nonempty.discard(slot)
        self.key_count -= 1
        self._account(slot, -memory.entry(len(key), len(value), self._per_key_extra))
        if self._ttl.discard(key):
            self._account(slot, -memory.TTL_ENTRY)
        if self._lru is not None:
            del self._lru[slot][key]
        elif self._lfu is not None:
            del self._lfu[slot][key]
        for listener in self._listeners:
            listener.key_removed(slot, key, cause)

    def _make_room(self, growth: int, protected: Iterable[bytes]) -> None:
        """Evict until ``growth`` more bytes fit under maxmemory, or raise OutOfMemory.

        Raises before anything is removed when the policy forbids eviction, or
        when the written keys alone would exceed maxmemory, so such a refused
        write changes nothing.
        """
        if not self.maxmemory or growth <= 0 or self.used_memory + growth <= self.maxmemory:
            return
        if self.policy is EvictionPolicy.NOEVICTION:
            raise OutOfMemory("maxmemory reached and the eviction policy is noeviction")
        keep = set(protected)
        if sum(map(self._footprint, keep)) + growth > self.maxmemory:
            # Evicting every other key would not make room, so evict nothing.
            raise OutOfMemory("the write is larger than maxmemory")
        misses = 0
        while self.used_memory + growth > self.maxmemory:
            victim = self._pick_victim(keep)
            if victim is None or victim in keep:
                misses += 1
                if victim is None or misses >= _EVICTION_ATTEMPTS:
                    raise OutOfMemory(
                        f"maxmemory reached and {self.policy.value} found nothing to evict"
                    )
                continue
            self._remove(key_slot(victim), victim, RemovalCause.EVICTED)
            self.stats.evicted += 1

    def _footprint(self, key: bytes) -> int:
        """Estimated bytes ``key`` holds now; 0 if it is not held."""
        value = self._data[key_slot(key)].get(key)
        if value is None:
            return 0
        size = memory.entry(len(key), len(value), self._per_key_extra)
        return size + memory.TTL_ENTRY if key in self._ttl else size

    def _pick_victim(self, keep: AbstractSet[bytes]) -> bytes | None:
        """A key to evict; a key in ``keep`` only when the sample offered nothing else."""
        policy = self.policy
        if policy.volatile:
            if not self._ttl:
                return None
            if policy is EvictionPolicy.VOLATILE_RANDOM:
                return self._ttl.random_entry(self._random)[0]
            candidates = [self._ttl.random_entry(self._random) for _ in range(self.samples)]
            if policy is EvictionPolicy.VOLATILE_TTL:
                allowed = [c for c in candidates if c[0] not in keep] or candidates
                return min(allowed, key=lambda c: c[1])[0]
            return self._best_candidate((k for k, _ in candidates), keep)
        if not self._nonempty:
            return None
        if policy is EvictionPolicy.ALLKEYS_RANDOM:
            return self._random_key()
        if policy is EvictionPolicy.ALLKEYS_LRU:
            heads = (
                _oldest(self._data[self._nonempty.random_member(self._random)], keep)
                for _ in range(self.samples)
            )
            return self._best_candidate(heads, keep)
        return self._best_candidate((self._random_key() for _ in range(self.samples)), keep)

    def _random_key(self) -> bytes:
        data = self._data[self._nonempty.random_member(self._random)]
        return next(islice(data, int(self._random() * len(data)), None))

    def _best_candidate(self, keys: Iterable[bytes], keep: AbstractSet[bytes]) -> bytes | None:
        """The candidate with the oldest access (LRU) or lowest counter (LFU), outside ``keep``.

        Falls back to a kept key when every candidate is kept, which the caller
        counts as a miss.
        """
        best: bytes | None = None
        best_score = 0
        kept: bytes | None = None
        for key in keys:
            if key in keep:
                kept = key
                continue
            slot = key_slot(key)
            if self._lru is not None:
                score = self._lru[slot][key]
            else:
                assert self._lfu is not None
                self._decay_slot(slot)
                score = self._lfu[slot][key]
            if best is None or score < best_score:
                best, best_score = key, score
        return best if best is not None else kept


def _live_columns(
    keys: Sequence[bytes], values: Sequence[bytes], deadlines: Sequence[int], now: int
) -> tuple[list[bytes], list[bytes], list[int]]:
    """Parallel columns without the entries whose deadline has passed."""
    if not any(0 < d <= now for d in deadlines):
        return list(keys), list(values), list(deadlines)
    live = [i for i, d in enumerate(deadlines) if not 0 < d <= now]
    return [keys[i] for i in live], [values[i] for i in live], [deadlines[i] for i in live]


def _oldest(data: dict[bytes, bytes], keep: AbstractSet[bytes]) -> bytes:
    """A slot's least recently used key outside ``keep``, or its head if all are kept."""
    for key in data:
        if key not in keep:
            return key
    return next(iter(data))
