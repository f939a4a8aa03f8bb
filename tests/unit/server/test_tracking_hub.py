"""The tracking hub on a real keyspace: what each change, limit and slot move invalidates."""

from __future__ import annotations

import itertools

import pytest

from slotcache.contract import SLOT_COUNT, key_slot
from slotcache_server.keyspace import EvictionPolicy, Keyspace
from slotcache_server.tracking.hub import Mode, Subscriber, TrackingHub, TrackingLimits
from slotcache_server.tracking.outbox import Batch


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keyspace(clock: Clock) -> Keyspace:
    return Keyspace(clock_ms=clock)


def new_hub(keyspace: Keyspace, **limits: int) -> TrackingHub:
    ids = itertools.count(1)
    return TrackingHub(keyspace, TrackingLimits(**limits), new_id=lambda: f"s{next(ids)}")


class Woken:
    """Counts how often the hub wakes a subscriber's stream."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def subscribe(
    hub: TrackingHub, mode: Mode = Mode.KEYS, slots: list[int] | None = None
) -> tuple[Subscriber, Woken]:
    woken = Woken()
    sub = hub.subscribe(mode, slots, woken)
    assert hub.first_seq(sub) == 1
    return sub, woken


def read(hub: TrackingHub, keyspace: Keyspace, sub: Subscriber, key: bytes) -> bytes | None:
    """A tracked Get, as the Cache service runs one."""
    value = keyspace.get(key)
    hub.track(sub, key_slot(key), key)
    return value


def drain(hub: TrackingHub, sub: Subscriber) -> list[Batch]:
    batches = []
    while (batch := hub.next_batch(sub)) is not None:
        batches.append(batch)
    return batches


def test_the_listener_is_registered_only_while_someone_subscribes(keyspace):
    hub = new_hub(keyspace)
    assert keyspace._listeners == ()
    a, _ = subscribe(hub)
    b, _ = subscribe(hub, Mode.BROADCAST)
    assert keyspace._listeners == (hub,)
    hub.unsubscribe(a)
    assert keyspace._listeners == (hub,)
    hub.unsubscribe(b)
    assert keyspace._listeners == ()


def test_a_read_key_is_invalidated_once_per_read(keyspace):
    hub = new_hub(keyspace)
    sub, woken = subscribe(hub)
    keyspace.set(b"k", b"1")
    assert read(hub, keyspace, sub, b"k") == b"1"
    keyspace.set(b"k", b"2")
    keyspace.set(b"k", b"3")
    keyspace.set(b"other", b"x")
    assert woken.count == 1
    assert drain(hub, sub) == [Batch(2, [b"k"], [], False)]
    keyspace.delete(b"k")
    assert drain(hub, sub) == []  # not read since: not tracked
    read(hub, keyspace, sub, b"k")  # absent keys are tracked too
    keyspace.set(b"k", b"4")
    assert drain(hub, sub) == [Batch(3, [b"k"], [], False)]
    assert hub.table.size == 0


@pytest.mark.parametrize(
    "change",
    [
        lambda ks, clock: ks.delete(b"k"),
        lambda ks, clock: ks.expire(b"k", 5000),
        lambda ks, clock: ks.persist(b"k"),
        lambda ks, clock: ks.incr(b"k", 1),
        lambda ks, clock: ks.set_many([(b"k", b"9", 0, 0, False)]),
    ],
    ids=["delete", "expire", "persist", "incr", "mset"],
)
def test_every_kind_of_change_invalidates(keyspace, clock, change):
    hub = new_hub(keyspace)
    sub, _ = subscribe(hub)
    keyspace.set(b"k", b"1", ttl_ms=100_000)
    read(hub, keyspace, sub, b"k")
    change(keyspace, clock)
    assert [b.keys for b in drain(hub, sub)] == [[b"k"]]


def test_expiry_lazy_and_active_invalidates(keyspace, clock):
    hub = new_hub(keyspace)
    sub, _ = subscribe(hub)
    keyspace.set(b"lazy", b"v", ttl_ms=10)
    keyspace.set(b"active", b"v", ttl_ms=10)
    read(hub, keyspace, sub, b"lazy")
    read(hub, keyspace, sub, b"active")
    clock.now += 11
    assert keyspace.get(b"lazy") is None
    while keyspace.expire_sample(20, clock.now):
        pass
    assert sorted(k for b in drain(hub, sub) for k in b.keys) == [b"active", b"lazy"]


def test_eviction_invalidates(clock):
    keyspace = Keyspace(maxmemory=4000, policy=EvictionPolicy.ALLKEYS_LRU, clock_ms=clock)
    hub = new_hub(keyspace)
    sub, _ = subscribe(hub)
    keyspace.set(b"victim", b"v" * 100)
    read(hub, keyspace, sub, b"victim")
    for i in range(100):
        keyspace.set(f"filler{i}".encode(), b"v" * 100)
    assert keyspace.stats.evicted > 0 and keyspace.get(b"victim") is None
    assert [k for b in drain(hub, sub) for k in b.keys] == [b"victim"]


def test_several_subscribers_of_one_key(keyspace):
    hub = new_hub(keyspace)
    a, _ = subscribe(hub)
    b, _ = subscribe(hub)
    c, _ = subscribe(hub)
    for sub in (a, b):
        read(hub, keyspace, sub, b"k")
    keyspace.set(b"k", b"v")
    assert [x.keys for x in drain(hub, a)] == [[b"k"]]
    assert [x.keys for x in drain(hub, b)] == [[b"k"]]
    assert drain(hub, c) == []


def test_broadcast_pushes_every_change_of_its_slots(keyspace):
    hub = new_hub(keyspace)
    slot = key_slot(b"{tag}")
    sub, woken = subscribe(hub, Mode.BROADCAST, [slot])
    everything, _ = subscribe(hub, Mode.BROADCAST)
    keyspace.set(b"{tag}1", b"v")
    keyspace.set(b"{tag}2", b"v")
    keyspace.set(b"{tag}1", b"w")
    keyspace.set(b"unrelated", b"v")
    assert woken.count == 1
    assert drain(hub, sub) == [Batch(2, [b"{tag}1", b"{tag}2"], [], False)]
    assert [b.keys for b in drain(hub, everything)] == [[b"{tag}1", b"{tag}2", b"unrelated"]]
    # Broadcast reads register nothing.
    read(hub, keyspace, sub, b"{tag}1")
    assert hub.table.size == 0


def test_limits_evict_registrations_and_invalidate_them(keyspace):
    hub = new_hub(keyspace, max_keys_per_subscriber=32)
    sub, _ = subscribe(hub)
    keys = [f"k{i}".encode() for i in range(33)]
    for key in keys:
        read(hub, keyspace, sub, key)
    (batch,) = drain(hub, sub)
    assert batch.keys == keys[:2]  # one over the limit, plus a chunk of 32 // 32
    assert hub.counters()["tracking.evictions"] == 2
    assert hub.counters()["tracking.keys"] == 31


def test_overflow_sends_one_flush_and_resets_registrations_when_it_leaves(keyspace):
    hub = new_hub(keyspace, queue_max=4)
    sub, _ = subscribe(hub)
    keys = [f"k{i}".encode() for i in range(6)]
    for key in keys:
        read(hub, keyspace, sub, key)
    for key in keys[:5]:
        keyspace.set(key, b"v")  # the fifth does not fit: flush
    read(hub, keyspace, sub, b"late")  # registered before the flush leaves: covered by it
    assert hub.next_batch(sub) == Batch(2, [], [], True)
    read(hub, keyspace, sub, b"after")  # registered after: kept
    while hub.release(100):
        pass
    assert set(sub.tracked) == {b"after"}
    assert hub.counters()["tracking.keys"] == 1
    assert hub.counters()["tracking.overflows"] == 1
    keyspace.set(keys[5], b"v")
    keyspace.set(b"late", b"v")
    keyspace.set(b"after", b"v")
    assert drain(hub, sub) == [Batch(3, [b"after"], [], False)]


def test_lost_slots_invalidate_tracked_keys_present_or_not(keyspace):
    hub = new_hub(keyspace)
    sub, _ = subscribe(hub)
    watcher, _ = subscribe(hub, Mode.BROADCAST, [key_slot(b"{m}"), key_slot(b"{k}")])
    keyspace.set(b"{m}held", b"v")
    read(hub, keyspace, sub, b"{m}held")
    read(hub, keyspace, sub, b"{m}absent")
    read(hub, keyspace, sub, b"{k}kept")
    drain(hub, watcher)
    moved = key_slot(b"{m}")
    hub.slots_lost([moved])
    assert sorted(k for b in drain(hub, sub) for k in b.keys) == [b"{m}absent", b"{m}held"]
    assert drain(hub, watcher) == [Batch(3, [], [moved], False)]
    hub.slots_lost([moved])  # heard again (event, then the ownership check): nothing new
    assert drain(hub, watcher) == []
    assert list(sub.tracked) == [b"{k}kept"]


def test_set_served_reports_only_slots_that_stopped_being_served(keyspace):
    hub = new_hub(keyspace)
    sub, _ = subscribe(hub)
    watcher, _ = subscribe(hub, Mode.BROADCAST)
    assert hub.set_served([(0, 99)]) == list(range(100, SLOT_COUNT))
    drain(hub, watcher)
    assert hub.set_served([(0, 99)]) == []
    key = next(k for k in (f"x{i}".encode() for i in range(10_000)) if key_slot(k) < 50)
    read(hub, keyspace, sub, key)
    assert hub.set_served([(50, 99)]) == list(range(50))
    assert [b.keys for b in drain(hub, sub)] == [[key]]
    assert [b.slots for b in drain(hub, watcher)] == [list(range(50))]


def test_a_read_marks_its_slot_served_so_a_quick_loss_is_not_missed(keyspace):
    hub = new_hub(keyspace)
    sub, _ = subscribe(hub)
    hub.set_served([])  # the node served nothing at the last check
    read(hub, keyspace, sub, b"k")  # ...then gained the slot and served a read
    hub.slots_lost([key_slot(b"k")])
    assert [b.keys for b in drain(hub, sub)] == [[b"k"]]


def test_unsubscribe_and_close_all_leave_no_state(keyspace):
    hub = new_hub(keyspace)
    a, woken = subscribe(hub)
    b, _ = subscribe(hub, Mode.BROADCAST, [1, 2])
    for i in range(100):
        read(hub, keyspace, a, f"k{i}".encode())
    hub.unsubscribe(a)
    assert a.closed and woken.count == 1  # its stream is woken to end
    assert hub.get(a.id) is None
    keyspace.set(b"k1", b"v")
    while hub.release(10):
        pass
    assert hub.counters()["tracking.keys"] == 0
    hub.close_all()
    assert b.closed
    counters = hub.counters()
    assert counters["tracking.subscribers"] == 0
    assert counters["tracking.keys"] == 0
    assert keyspace._listeners == ()
    assert all(w == () for w in hub._watchers)
