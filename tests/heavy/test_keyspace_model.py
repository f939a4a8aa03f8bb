"""Keyspace against a reference model: a dict of key -> (value, deadline or None).

The model holds only keys that are logically live. The keyspace may still hold
expired keys that nobody has looked at yet; the invariants allow exactly that
and nothing more, and they read the keyspace without touching it, so that
expired-but-uncollected keys survive into later steps (where lazy expiry,
IF_ABSENT, keep_ttl and incr have to get them right).

Checking every slot's count after every step is what makes this long, so it
runs outside the unit tier; tests/unit/server/test_keyspace_regressions.py
keeps focused cases, each also reachable by this machine.
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
    OutOfRange,
    memory,
)
from tests.support.keyspace import INT64_MAX, INT64_MIN, FakeClock

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
