"""Focused keyspace regressions: each is also reachable by the model test in tests/heavy.

They pin the edge cases (a batch that sees its own earlier entries, TTLs
at the edges of int64, refused writes that must change nothing) so that
the fast tier checks them on every run.
"""

import random

import pytest

from slotcache_server.keyspace import (
    Condition,
    EvictionPolicy,
    Keyspace,
    NotAnInteger,
    OutOfMemory,
    OutOfRange,
)
from tests.support.keyspace import INT64_MAX, INT64_MIN, START_MS, FakeClock


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


def _state(ks):
    keys = [b"a", b"b", b"{t}c", b"d"]
    return (
        [(ks.get(k), ks.pttl(k)) for k in keys],
        ks.used_memory,
        ks.key_count,
        ks.stats.expired_lazy,
    )


@pytest.mark.parametrize(
    "keys, values",
    [
        # New keys, a TTL, a hash tag and a repeated key: each key in turn.
        ([b"a", b"{t}c", b"d", b"a"], [b"a much longer value", b"z", b"new", b"last"]),
        # Overwrites of live keys without a TTL by values of their size: one sweep.
        ([b"a", b"a", b"a"], [b"SHORT", b"short", b"12345"]),
        # The same, but one value changes size.
        ([b"a", b"a"], [b"SHORT", b"a longer one"]),
    ],
)
@pytest.mark.parametrize("policy", ["noeviction", "allkeys-lru"])
def test_put_many_and_get_many_match_set_and_get_one_by_one(policy, keys, values):
    """The batched plain SET and GET leave exactly what set() and get() would, TTLs included."""

    def prepared():
        ks, clock = _ks(policy=EvictionPolicy(policy), maxmemory=1 << 30)
        ks.set(b"a", b"short")
        ks.set(b"b", b"x", ttl_ms=10)
        ks.set(b"{t}c", b"y", ttl_ms=1_000)
        clock.now += 10  # b's deadline has passed; {t}c still lives
        return ks

    batched, single = prepared(), prepared()
    assert batched.get_many([b"b", b"{t}c", b"a", b"d"]) == [None, b"y", b"short", None]
    assert [single.get(k) for k in (b"b", b"{t}c", b"a", b"d")] == [None, b"y", b"short", None]
    batched.put_many(keys, values)
    for key, value in zip(keys, values, strict=True):
        single.set(key, value)
    assert _state(batched) == _state(single)
    assert (batched.stats.hits, batched.stats.misses) == (single.stats.hits, single.stats.misses)
    if b"{t}c" in keys:
        # A plain SET drops the TTL it overwrites, as Redis's SET does.
        assert batched.pttl(b"{t}c") == -1
