"""Keyspace against a reference model: a dict of key -> (value, deadline or None).

The model holds only keys that are logically live. The keyspace may still hold
expired keys that nobody has looked at yet; the invariants allow exactly that
and nothing more, and they read the keyspace without touching it, so that
expired-but-uncollected keys survive into later steps (where lazy expiry,
IF_ABSENT, keep_ttl and incr have to get them right).
"""

import random
import re

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from slotcache.contract import SLOT_COUNT, key_slot
from slotcache_server.keyspace import (
    Condition,
    EvictionPolicy,
    Keyspace,
    NotAnInteger,
    OutOfMemory,
    OutOfRange,
    memory,
)

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
START_MS = 1_700_000_000_000


class FakeClock:
    def __init__(self, now=START_MS):
        self.now = now

    def __call__(self):
        return self.now


# Few keys, two of them sharing a slot through a hash tag, so operations collide.
KEYS = [b"a", b"b", b"c", b"{t}a", b"{t}b"]
keys = st.sampled_from(KEYS)
values = st.one_of(
    st.sampled_from(
        [
            b"",
            b"0",
            b"1",
            b"-1",
            b"42",
            b"007",
            b"-0",
            b"+1",
            b" 1",
            b"1.5",
            b"abc",
            b"9223372036854775807",
            b"9223372036854775806",
            b"-9223372036854775808",
            b"-9223372036854775807",
            b"9223372036854775808",
            b"99999999999999999999",
        ]
    ),
    st.binary(max_size=8),
)
# Round numbers make the clock land exactly on deadlines often.
ttls = st.one_of(st.sampled_from([0, 1, 2, 10, 100]), st.integers(0, 300))
positive_ttls = st.one_of(st.sampled_from([1, 2, 10, 100]), st.integers(1, 300))
conditions = st.sampled_from(list(Condition))
deltas = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([INT64_MAX, INT64_MIN, 2**62, -(2**62), INT64_MAX - 1]),
)

_CANONICAL_INT = re.compile(rb"-?(0|[1-9][0-9]*)")


def model_parse_int(value):
    """Redis INCR rules: canonical base-10 signed 64-bit, else None."""
    if not _CANONICAL_INT.fullmatch(value) or value == b"-0":
        return None
    n = int(value)
    return n if INT64_MIN <= n <= INT64_MAX else None


def held_entries(ks):
    """(key, value, deadline) of every key the keyspace holds, expired or not.

    Reads the per-slot dicts directly: the public reads all expire lazily, and
    the invariants must not change what they observe.
    """
    out = []
    for slot in ks.nonempty_slots():
        for key in ks.slot_keys(slot):
            out.append((key, ks._data[slot][key], ks.deadline(key)))
    return out


def expected_memory(ks, entries):
    extra = memory.DICT_SLOT if (ks.policy.lru or ks.policy.lfu) else 0
    total = 0
    for key, value, deadline in entries:
        total += memory.entry(len(key), len(value), extra)
        if deadline:
            total += memory.TTL_ENTRY
    return total


class KeyspaceMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.clock = FakeClock()
        self.model = {}
        self.ks = Keyspace(clock_ms=self.clock)

    @initialize(policy=st.sampled_from(list(EvictionPolicy)), seed=st.integers(0, 2**32 - 1))
    def choose_policy(self, policy, seed):
        # No maxmemory, so nothing is evicted and the model stays exact; the
        # policy still decides which bookkeeping (LRU order, LFU counters) runs.
        self.ks = Keyspace(policy=policy, clock_ms=self.clock, random=random.Random(seed).random)

    # ---- model helpers -----------------------------------------------------

    def _deadline(self, ttl_ms):
        return self.clock.now + ttl_ms if ttl_ms > 0 else None

    def _model_set(self, model, key, value, ttl_ms, condition, keep_ttl):
        old = model.get(key)
        if condition is Condition.IF_ABSENT and old is not None:
            return False
        if condition is Condition.IF_PRESENT and old is None:
            return False
        if not keep_ttl:
            deadline = self._deadline(ttl_ms)
        elif old is not None:
            deadline = old[1]
        else:
            deadline = None
        model[key] = (value, deadline)
        return True

    def _expected_pttl(self, key):
        entry = self.model.get(key)
        if entry is None:
            return -2
        return -1 if entry[1] is None else entry[1] - self.clock.now

    # ---- rules -------------------------------------------------------------

    @rule(key=keys, value=values, ttl_ms=ttls, condition=conditions, keep_ttl=st.booleans())
    def set(self, key, value, ttl_ms, condition, keep_ttl):
        expected = self._model_set(self.model, key, value, ttl_ms, condition, keep_ttl)
        got = self.ks.set(key, value, ttl_ms=ttl_ms, condition=condition, keep_ttl=keep_ttl)
        assert got == expected

    @rule(
        entries=st.lists(
            st.tuples(keys, values, ttls, conditions, st.booleans()), min_size=0, max_size=5
        )
    )
    def set_many(self, entries):
        expected = [self._model_set(self.model, *entry) for entry in entries]
        assert self.ks.set_many(entries) == expected

    @rule(key=keys, value=values, offset=st.integers(-50, 300))
    def set_with_deadline(self, key, value, offset):
        # offset 0 means "no deadline"; a negative one is already in the past.
        deadline = self.clock.now + offset if offset else 0
        self.ks.set_with_deadline(key, value, deadline)
        if offset == 0:
            self.model[key] = (value, None)
        elif deadline > self.clock.now:
            self.model[key] = (value, deadline)
        else:
            self.model.pop(key, None)

    @rule(key=keys)
    def get(self, key):
        entry = self.model.get(key)
        assert self.ks.get(key) == (None if entry is None else entry[0])

    @rule(batch=st.lists(keys, max_size=6))
    def get_many(self, batch):
        expected = [self.model[k][0] if k in self.model else None for k in batch]
        assert self.ks.get_many(batch) == expected

    @rule(key=keys)
    def exists(self, key):
        assert self.ks.exists(key) == (key in self.model)

    @rule(key=keys)
    def pttl(self, key):
        assert self.ks.pttl(key) == self._expected_pttl(key)

    @rule(key=keys)
    def delete(self, key):
        assert self.ks.delete(key) == (key in self.model)
        self.model.pop(key, None)

    @rule(batch=st.lists(keys, max_size=6))
    def delete_many(self, batch):
        expected = 0
        for key in batch:
            if self.model.pop(key, None) is not None:
                expected += 1
        assert self.ks.delete_many(batch) == expected

    @rule(key=keys, ttl_ms=positive_ttls)
    def expire(self, key, ttl_ms):
        assert self.ks.expire(key, ttl_ms) == (key in self.model)
        if key in self.model:
            self.model[key] = (self.model[key][0], self.clock.now + ttl_ms)

    @rule(key=keys)
    def persist(self, key):
        entry = self.model.get(key)
        assert self.ks.persist(key) == (entry is not None and entry[1] is not None)
        if entry is not None:
            self.model[key] = (entry[0], None)

    @rule(key=keys, delta=deltas)
    def incr(self, key, delta):
        entry = self.model.get(key)
        current = 0 if entry is None else model_parse_int(entry[0])
        if current is None:
            with pytest.raises(NotAnInteger):
                self.ks.incr(key, delta)
        elif not INT64_MIN <= current + delta <= INT64_MAX:
            with pytest.raises(OutOfRange):
                self.ks.incr(key, delta)
        else:
            result = current + delta
            assert self.ks.incr(key, delta) == result
            self.model[key] = (str(result).encode(), None if entry is None else entry[1])
            return
        # A refused incr changed nothing.
        assert self.ks.get(key) == (None if entry is None else entry[0])
        assert self.ks.pttl(key) == self._expected_pttl(key)

    @rule(ms=st.one_of(st.sampled_from([0, 1, 2, 10, 100]), st.integers(0, 250)))
    def advance(self, ms):
        self.clock.now += ms
        now = self.clock.now
        self.model = {k: (v, d) for k, (v, d) in self.model.items() if d is None or d > now}

    @rule()
    def expiry_cycle(self):
        before = self.ks.key_count
        active_before = self.ks.stats.expired_active
        stats = self.ks.run_expiry_cycle()
        assert self.ks.key_count == before - stats.expired
        assert self.ks.stats.expired_active == active_before + stats.expired
        assert stats.expired <= stats.sampled

    # ---- invariants --------------------------------------------------------

    @invariant()
    def keyspace_agrees_with_model(self):
        ks = self.ks
        now = self.clock.now
        entries = held_entries(ks)
        held = {key: (value, deadline) for key, value, deadline in entries}
        for key, (value, deadline) in self.model.items():
            assert held.get(key) == (value, deadline or 0), key
        for key, (_, deadline) in held.items():
            if key not in self.model:
                # Only an expired key that nobody has touched yet may linger.
                assert deadline != 0 and deadline <= now, key
        assert ks.key_count == len(held)
        assert sum(map(ks.slot_key_count, range(SLOT_COUNT))) == ks.key_count
        for key in KEYS:
            assert (key_slot(key) in set(ks.nonempty_slots())) == any(
                key_slot(k) == key_slot(key) for k in held
            )
        assert ks.ttl_key_count() == sum(1 for _, d in held.values() if d)
        assert ks.used_memory >= 0
        assert ks.used_memory == expected_memory(ks, entries)
        if ks.key_count == 0:
            assert ks.used_memory == 0


KeyspaceMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
TestKeyspaceModel = KeyspaceMachine.TestCase


# ---- focused regressions (each also reachable by the machine above) ---------


def _ks(**kwargs):
    clock = kwargs.pop("clock", None) or FakeClock()
    return Keyspace(clock_ms=clock, random=random.Random(1).random, **kwargs), clock


def test_set_many_keep_ttl_sees_earlier_entry_in_same_batch():
    ks, clock = _ks()
    ks.set(b"k", b"old")
    result = ks.set_many(
        [
            (b"k", b"v1", 1_000, Condition.ALWAYS, False),
            (b"k", b"v2", 0, Condition.ALWAYS, True),
        ]
    )
    assert result == [True, True]
    assert ks.get(b"k") == b"v2"
    # Sequential semantics: the second write keeps the TTL the first one set.
    assert ks.pttl(b"k") == 1_000
    clock.now += 1_000
    assert ks.get(b"k") is None
    assert ks.used_memory == 0


def test_set_many_conditions_see_earlier_entries():
    ks, _ = _ks()
    result = ks.set_many(
        [
            (b"k", b"1", 0, Condition.IF_PRESENT, False),
            (b"k", b"2", 0, Condition.IF_ABSENT, False),
            (b"k", b"3", 0, Condition.IF_ABSENT, False),
            (b"k", b"4", 0, Condition.IF_PRESENT, False),
        ]
    )
    assert result == [False, True, False, True]
    assert ks.get(b"k") == b"4"


@pytest.mark.parametrize("ttl_ms", [INT64_MAX, INT64_MAX - START_MS + 1])
def test_huge_ttl_is_refused_and_changes_nothing(ttl_ms):
    ks, _ = _ks()
    ks.set(b"a", b"1", ttl_ms=500)
    ks.set(b"b", b"2")
    before = (ks.key_count, ks.used_memory, ks.ttl_key_count())
    with pytest.raises(ValueError, match="ttl"):
        ks.set(b"c", b"3", ttl_ms=ttl_ms)
    with pytest.raises(ValueError, match="ttl"):
        ks.set(b"b", b"3", ttl_ms=ttl_ms)
    with pytest.raises(ValueError, match="ttl"):
        ks.set_many(
            [
                (b"d", b"4", 0, Condition.ALWAYS, False),
                (b"e", b"5", ttl_ms, Condition.ALWAYS, False),
            ]
        )
    with pytest.raises(ValueError, match="ttl"):
        ks.expire(b"b", ttl_ms)
    with pytest.raises(ValueError, match="deadline"):
        ks.set_with_deadline(b"f", b"6", 2**63)
    assert (ks.key_count, ks.used_memory, ks.ttl_key_count()) == before
    assert ks.get(b"a") == b"1"
    assert ks.pttl(b"a") == 500
    assert ks.get(b"b") == b"2"
    assert ks.pttl(b"b") == -1
    assert not ks.exists(b"c")
    assert not ks.exists(b"d")
    # The TTL index is still usable.
    assert ks._ttl.random_entry(random.Random(0).random)[0] == b"a"
    assert ks.expire(b"b", 100)
    assert ks.pttl(b"b") == 100


def test_largest_representable_deadline_is_accepted():
    ks, _ = _ks()
    assert ks.set(b"a", b"1", ttl_ms=INT64_MAX - START_MS)
    assert ks.deadline(b"a") == INT64_MAX
    assert ks.expire(b"a", INT64_MAX - START_MS - 1)
    assert ks.pttl(b"a") == INT64_MAX - START_MS - 1
    ks.set_with_deadline(b"b", b"2", INT64_MAX)
    assert ks.pttl(b"b") == INT64_MAX - START_MS


def test_a_key_expires_exactly_at_its_deadline():
    ks, clock = _ks()
    ks.set(b"a", b"1", ttl_ms=100)
    ks.set(b"b", b"2", ttl_ms=100)
    clock.now += 99
    assert ks.pttl(b"a") == 1
    clock.now += 1
    assert ks.get(b"a") is None
    assert ks.pttl(b"a") == -2
    assert not ks.exists(b"b")
    assert ks.stats.expired_lazy == 2
    assert ks.key_count == 0
    assert ks.used_memory == 0


def test_expire_rejects_non_positive_ttl():
    ks, _ = _ks()
    ks.set(b"a", b"1")
    for ttl_ms in (0, -1):
        with pytest.raises(ValueError):
            ks.expire(b"a", ttl_ms)
    assert ks.pttl(b"a") == -1


@pytest.mark.parametrize(
    ("value", "delta", "error"),
    [
        (b"9223372036854775807", 1, OutOfRange),
        (b"-9223372036854775808", -1, OutOfRange),
        (b"0", INT64_MAX + 1, OutOfRange),
        (b"abc", 1, NotAnInteger),
        (b"", 1, NotAnInteger),
        (b"-0", 1, NotAnInteger),
        (b"01", 1, NotAnInteger),
        (b"+1", 1, NotAnInteger),
        (b" 1", 1, NotAnInteger),
        (b"9223372036854775808", 0, NotAnInteger),
        (b"\xd9\xa1", 1, NotAnInteger),  # a non-ASCII digit
    ],
)
def test_refused_incr_changes_nothing(value, delta, error):
    ks, _ = _ks()
    ks.set(b"n", value, ttl_ms=5_000)
    before = (ks.key_count, ks.used_memory)
    with pytest.raises(error):
        ks.incr(b"n", delta)
    assert ks.get(b"n") == value
    assert ks.pttl(b"n") == 5_000
    assert (ks.key_count, ks.used_memory) == before


def test_incr_keeps_ttl_and_starts_missing_or_expired_keys_at_zero():
    ks, clock = _ks()
    assert ks.incr(b"n", 5) == 5
    assert ks.pttl(b"n") == -1
    ks.expire(b"n", 100)
    assert ks.incr(b"n", -7) == -2
    assert ks.get(b"n") == b"-2"
    assert ks.pttl(b"n") == 100
    clock.now += 100
    assert ks.incr(b"n", 1) == 1
    assert ks.pttl(b"n") == -1
    assert ks.incr(b"m", INT64_MIN) == INT64_MIN
    assert ks.get(b"m") == b"-9223372036854775808"


def test_refused_set_under_noeviction_changes_nothing():
    ks, _ = _ks(maxmemory=1)
    with pytest.raises(OutOfMemory):
        ks.set(b"k", b"v")
    assert ks.key_count == 0
    assert ks.used_memory == 0
