"""The near-cache tracking table: registrations, one invalidation per read, limits, release."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from slotcache.contract import key_slot
from slotcache_server.tracking.table import TrackingTable


class Sub:
    """A subscriber as the table sees it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tracked: dict[bytes, int] = {}

    def __repr__(self) -> str:
        return self.name


def track(table: TrackingTable[Sub], sub: Sub, key: bytes) -> list[tuple[Sub, list[bytes]]]:
    return list(table.track(sub, key_slot(key), key))


def new_table(max_keys: int = 1000, per_sub: int = 1000) -> TrackingTable[Sub]:
    return TrackingTable(max_keys, per_sub)


def attached(table: TrackingTable[Sub], *names: str) -> list[Sub]:
    subs = [Sub(n) for n in names]
    for sub in subs:
        table.attach(sub)
    return subs


def test_a_change_takes_every_registration_once():
    table = new_table()
    a, b = attached(table, "a", "b")
    track(table, a, b"k")
    track(table, b, b"k")
    track(table, a, b"k")  # a second read of a tracked key registers nothing more
    assert table.size == 2
    assert sorted(table.take(key_slot(b"k"), b"k"), key=repr) == [a, b]
    assert table.size == 0
    assert list(table.take(key_slot(b"k"), b"k")) == []  # one read, one invalidation
    assert a.tracked == {} and b.tracked == {}


def test_untracked_changes_take_nothing():
    table = new_table()
    (a,) = attached(table, "a")
    track(table, a, b"k")
    assert list(table.take(key_slot(b"other"), b"other")) == []
    assert table.size == 1


def test_take_slot_returns_registrations_by_subscriber():
    table = new_table()
    a, b = attached(table, "a", "b")
    # Keys with a hash tag share a slot.
    keys = [b"{t}1", b"{t}2", b"{t}3"]
    for key in keys:
        track(table, a, key)
    track(table, b, keys[1])
    track(table, a, b"elsewhere")
    taken = table.take_slot(key_slot(b"{t}"))
    assert sorted(taken[a]) == keys
    assert taken[b] == [keys[1]]
    assert table.size == 1
    assert list(a.tracked) == [b"elsewhere"]


def test_per_subscriber_limit_evicts_the_oldest_in_a_chunk():
    table = new_table(max_keys=10_000, per_sub=64)
    a, b = attached(table, "a", "b")
    track(table, b, b"b-key")
    keys = [f"k{i}".encode() for i in range(64)]
    for key in keys:
        assert track(table, a, key) == []
    evicted = track(table, a, b"newest")
    # 64 + 1 is one over: the one plus a chunk of 64 // 32 = 2 more go.
    assert evicted == [(a, keys[:3])]
    assert list(a.tracked) == [*keys[3:], b"newest"]
    assert table.evictions == 3
    assert table.size == 62 + 1
    assert all(table.holders(key_slot(k), k) == [] for k in keys[:3])


def test_total_limit_evicts_from_the_largest_subscriber():
    table = new_table(max_keys=100, per_sub=1000)
    big, small = attached(table, "big", "small")
    for i in range(90):
        track(table, big, f"b{i}".encode())
    for i in range(10):
        track(table, small, f"s{i}".encode())
    evicted = track(table, small, b"s-new")
    assert [victim for victim, _ in evicted] == [big]
    (keys,) = [k for _, k in evicted]
    assert keys == [f"b{i}".encode() for i in range(len(keys))]  # oldest first
    assert len(keys) == 1 + 100 // 32
    assert table.size <= 100
    assert len(small.tracked) == 11


def test_a_subscriber_alone_at_the_limit_keeps_the_key_it_just_read():
    table = new_table(max_keys=1, per_sub=1)
    (a,) = attached(table, "a")
    track(table, a, b"old")
    assert track(table, a, b"new") == [(a, [b"old"])]
    assert list(a.tracked) == [b"new"]


def test_detach_releases_in_bounded_steps():
    table = new_table(max_keys=100_000, per_sub=100_000)
    a, b = attached(table, "a", "b")
    for i in range(10_000):
        track(table, a, f"k{i}".encode())
    track(table, b, b"k5")
    table.detach(a)
    assert a.tracked == {}
    assert list(table.take(key_slot(b"k7"), b"k7")) == []  # a departed entry is not invalidated
    steps = 0
    while table.release(1000):
        steps += 1
    assert steps >= 9
    assert table.size == 1
    assert table.holders(key_slot(b"k5"), b"k5") == [b]


def test_reset_keeps_registrations_made_after_it():
    table = new_table()
    (a,) = attached(table, "a")
    track(table, a, b"before")
    track(table, a, b"both")
    table.reset(a)
    track(table, a, b"both")  # read again before the old entry was released
    track(table, a, b"after")
    while table.release(1):
        pass
    assert sorted(a.tracked) == [b"after", b"both"]
    assert table.size == 2
    assert list(table.take(key_slot(b"both"), b"both")) == [a]
    assert list(table.take(key_slot(b"before"), b"before")) == []


def test_limits_must_be_positive():
    with pytest.raises(ValueError):
        TrackingTable(0, 1)


# ---- a model check -------------------------------------------------------------------

KEYS = [f"key{i}".encode() for i in range(12)] + [b"{s}a", b"{s}b"]


class TableModel(RuleBasedStateMachine):
    """The table against a plain model: who tracks what, with the limits respected."""

    def __init__(self) -> None:
        super().__init__()
        self.table: TrackingTable[Sub] = TrackingTable(max_keys=20, max_per_subscriber=8)
        self.subs = attached(self.table, "a", "b", "c")
        self.model: dict[Sub, set[bytes]] = {s: set() for s in self.subs}

    @rule(i=st.integers(0, 2), key=st.sampled_from(KEYS))
    def track(self, i: int, key: bytes) -> None:
        sub = self.subs[i]
        self.model[sub].add(key)
        for victim, keys in track(self.table, sub, key):
            assert keys, "an eviction names its keys"
            for evicted in keys:
                assert evicted in self.model[victim]
                assert not (victim is sub and evicted == key), "the key just read stays"
                self.model[victim].discard(evicted)
        assert len(sub.tracked) <= 8

    @rule(key=st.sampled_from(KEYS))
    def change(self, key: bytes) -> None:
        taken = set(self.table.take(key_slot(key), key))
        assert taken == {s for s, keys in self.model.items() if key in keys}
        for keys in self.model.values():
            keys.discard(key)

    @rule()
    def lose_slot(self) -> None:
        slot = key_slot(b"{s}")
        taken = self.table.take_slot(slot)
        for sub, keys in self.model.items():
            lost = {k for k in keys if key_slot(k) == slot}
            assert set(taken.get(sub, [])) == lost
            keys -= lost

    @rule(i=st.integers(0, 2))
    def reset(self, i: int) -> None:
        self.table.reset(self.subs[i])
        self.model[self.subs[i]].clear()

    @rule(budget=st.integers(1, 7))
    def release(self, budget: int) -> None:
        self.table.release(budget)

    @precondition(lambda self: not self.table.releasing)
    @invariant()
    def size_counts_live_registrations(self) -> None:
        assert self.table.size == sum(len(keys) for keys in self.model.values())

    @invariant()
    def holders_match(self) -> None:
        for key in KEYS:
            holders = set(self.table.holders(key_slot(key), key))
            assert holders == {s for s, keys in self.model.items() if key in keys}
        for sub, keys in self.model.items():
            assert set(sub.tracked) == keys
        assert self.table.size <= 20


TableModel.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
test_table_model = TableModel.TestCase
