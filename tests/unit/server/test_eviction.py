"""maxmemory and the eight eviction policies.

Every keyspace here uses a fake clock and a seeded random source, so each
statistical assertion is deterministic; the thresholds state how well the
sampled approximation must do, with margin over what it does today, and far
above what a policy that ignored recency/frequency/TTL would reach (about 50%,
or 80% for the LFU test).
"""

import random

import pytest

from slotcache_server.keyspace import (
    Condition,
    EvictionPolicy,
    Keyspace,
    NotAnInteger,
    OutOfMemory,
)
from slotcache_server.keyspace.eviction import LFU_INIT, LFU_MAX, lfu_decay, lfu_increment
from tests.support.keyspace import FakeClock

VALUE = b"v" * 50
ALL_POLICIES = list(EvictionPolicy)
VOLATILE = [p for p in EvictionPolicy if p.volatile]


def make(policy, *, maxmemory=0, seed=1, samples=5):
    clock = FakeClock()
    ks = Keyspace(
        policy=policy,
        maxmemory=maxmemory,
        samples=samples,
        clock_ms=clock,
        random=random.Random(seed).random,
    )
    return ks, clock


def held(ks, keys):
    return [k for k in keys if ks.exists(k)]


# ---- policy names ------------------------------------------------------------


NAMES = [
    "noeviction",
    "allkeys-lru",
    "volatile-lru",
    "allkeys-lfu",
    "volatile-lfu",
    "allkeys-random",
    "volatile-random",
    "volatile-ttl",
]


@pytest.mark.parametrize("name", NAMES)
def test_parse_accepts_the_eight_names(name):
    policy = EvictionPolicy.parse(name)
    assert policy.value == name
    assert EvictionPolicy.parse(f"  {name.upper()} ") is policy


def test_parse_names_cover_every_policy():
    assert {EvictionPolicy.parse(n) for n in NAMES} == set(EvictionPolicy)


@pytest.mark.parametrize("bad", ["", "lru", "allkeys_lru", "volatile-lru2", "maxmemory"])
def test_parse_rejects_others_listing_valid_names(bad):
    with pytest.raises(ValueError) as info:
        EvictionPolicy.parse(bad)
    message = str(info.value)
    assert repr(bad) in message
    for name in NAMES:
        assert name in message


def test_policy_properties():
    assert [p.value for p in EvictionPolicy if p.volatile] == [
        "volatile-lru",
        "volatile-lfu",
        "volatile-random",
        "volatile-ttl",
    ]
    assert {p.value for p in EvictionPolicy if p.lru} == {"allkeys-lru", "volatile-lru"}
    assert {p.value for p in EvictionPolicy if p.lfu} == {"allkeys-lfu", "volatile-lfu"}


def test_keyspace_rejects_bad_limits():
    with pytest.raises(ValueError):
        Keyspace(maxmemory=-1)
    with pytest.raises(ValueError):
        Keyspace(samples=0)


# ---- LFU arithmetic ----------------------------------------------------------


def test_lfu_increment_below_init_always_increments():
    for counter in range(LFU_INIT + 1):
        assert lfu_increment(counter, 10, lambda: 0.999999) == counter + 1


def test_lfu_increment_probability_falls_with_the_counter():
    # base = counter - LFU_INIT; p = 1 / (base * log_factor + 1)
    counter = LFU_INIT + 3  # p = 1/31
    assert lfu_increment(counter, 10, lambda: 1 / 31 - 1e-9) == counter + 1
    assert lfu_increment(counter, 10, lambda: 1 / 31) == counter
    rng = random.Random(3)
    hits = sum(lfu_increment(counter, 10, rng.random) - counter for _ in range(31_000))
    assert 800 <= hits <= 1200  # expected 1000


def test_lfu_increment_saturates():
    assert lfu_increment(LFU_MAX, 10, lambda: 0.0) == LFU_MAX
    assert lfu_increment(LFU_MAX - 1, 0, lambda: 0.5) == LFU_MAX


def test_lfu_counter_reaches_high_values_only_after_many_accesses():
    rng = random.Random(5)
    counter = LFU_INIT
    for _ in range(100):
        counter = lfu_increment(counter, 10, rng.random)
    hundred = counter
    for _ in range(100_000):
        counter = lfu_increment(counter, 10, rng.random)
    assert LFU_INIT < hundred < 20
    assert hundred < counter < LFU_MAX


@pytest.mark.parametrize(
    ("counter", "periods", "expected"),
    [(10, 0, 10), (10, 3, 7), (10, 10, 0), (10, 11, 0), (0, 1, 0), (255, 1, 254)],
)
def test_lfu_decay(counter, periods, expected):
    assert lfu_decay(counter, periods) == expected


# ---- which keys go -----------------------------------------------------------


@pytest.mark.parametrize("read_half", ["first", "second"])
def test_allkeys_lru_evicts_least_recently_used_first(read_half):
    # Reading the half written first checks that a read really moves a key out
    # of the eviction candidates' way, not merely that old writes go first.
    ks, clock = make(EvictionPolicy.ALLKEYS_LRU)
    n = 40_000
    old = [b"old:%06d" % i for i in range(n)]
    for key in old:
        ks.set(key, VALUE)
    ks.maxmemory = ks.used_memory
    first, second = old[: n // 2], old[n // 2 :]
    touched, untouched = (first, second) if read_half == "first" else (second, first)
    # LRU stamps have 100 ms resolution: move well past one tick, then read.
    clock.now += 250
    for key in touched:
        assert ks.get(key) == VALUE
    clock.now += 250
    extra = n // 10
    for i in range(extra):
        ks.set(b"new:%06d" % i, VALUE)  # same size as the old entries
        assert ks.used_memory <= ks.maxmemory
    assert ks.stats.evicted == extra
    assert ks.key_count == n
    evicted_untouched = len(untouched) - len(held(ks, untouched))
    evicted_touched = len(touched) - len(held(ks, touched))
    evicted_old = evicted_untouched + evicted_touched
    assert evicted_old >= 0.95 * extra
    assert evicted_untouched >= 0.95 * evicted_old
    assert len(held(ks, touched)) >= 0.99 * len(touched)


@pytest.mark.parametrize(("samples", "threshold"), [(5, 0.93), (10, 0.99)])
def test_volatile_ttl_evicts_nearest_deadlines_first(samples, threshold):
    # With 5 samples and half the keys "near", 1 - 0.5**5 = 97% of evictions
    # start out near; a policy blind to deadlines would manage 50%.
    ks, _ = make(EvictionPolicy.VOLATILE_TTL, samples=samples)
    n = 20_000
    near = [b"near:%05d" % i for i in range(n // 2)]
    far = [b"far::%05d" % i for i in range(n // 2)]
    for i, (a, b) in enumerate(zip(near, far, strict=True)):
        ks.set(a, VALUE, ttl_ms=10_000 + i)
        ks.set(b, VALUE, ttl_ms=3_600_000 + i)
    ks.maxmemory = ks.used_memory
    for i in range(n // 10):
        ks.set(b"new:%06d" % i, VALUE)  # no TTL: never a candidate
        assert ks.used_memory <= ks.maxmemory
    evicted_near = len(near) - len(held(ks, near))
    evicted_far = len(far) - len(held(ks, far))
    assert evicted_near + evicted_far == ks.stats.evicted > 0
    assert evicted_near >= threshold * ks.stats.evicted
    assert len(held(ks, [b"new:%06d" % i for i in range(n // 10)])) == n // 10


@pytest.mark.parametrize("policy", [EvictionPolicy.ALLKEYS_LFU, EvictionPolicy.VOLATILE_LFU])
def test_lfu_evicts_rarely_used_keys_first(policy):
    ks, _ = make(policy)
    n = 20_000
    keys = [b"key:%06d" % i for i in range(n)]
    hot = keys[::5]  # 20%
    cold = [k for i, k in enumerate(keys) if i % 5]
    for key in keys:
        ks.set(key, VALUE, ttl_ms=3_600_000)
    for _ in range(10):
        for key in hot:
            assert ks.get(key) == VALUE
    ks.maxmemory = ks.used_memory
    for i in range(n // 4):
        ks.set(b"new:%06d" % i, VALUE, ttl_ms=3_600_000)
        assert ks.used_memory <= ks.maxmemory
    evicted_hot = len(hot) - len(held(ks, hot))
    evicted_cold = len(cold) - len(held(ks, cold))
    assert evicted_cold >= 0.5 * (n // 4)  # new keys compete with cold ones (same counter)
    assert evicted_hot <= 0.01 * (evicted_hot + evicted_cold)
    assert len(held(ks, hot)) >= 0.99 * len(hot)


@pytest.mark.parametrize("policy", VOLATILE)
def test_volatile_policies_never_evict_keys_without_ttl(policy):
    ks, _ = make(policy)
    persistent = [b"p:%05d" % i for i in range(3_000)]
    volatile = [b"v:%05d" % i for i in range(3_000)]
    for i, (p, v) in enumerate(zip(persistent, volatile, strict=True)):
        ks.set(p, VALUE)
        ks.set(v, VALUE, ttl_ms=60_000 + i)
    ks.maxmemory = ks.used_memory
    for i in range(2_000):
        ks.set(b"n:%05d" % i, VALUE)
        assert ks.used_memory <= ks.maxmemory
    assert held(ks, persistent) == persistent
    assert ks.stats.evicted > 0
    assert len(held(ks, volatile)) == len(volatile) - ks.stats.evicted


def test_allkeys_random_evicts_from_every_kind_of_key_but_never_the_one_being_written():
    ks, _ = make(EvictionPolicy.ALLKEYS_RANDOM)
    persistent = [b"p:%05d" % i for i in range(3_000)]
    volatile = [b"v:%05d" % i for i in range(3_000)]
    for i, (p, v) in enumerate(zip(persistent, volatile, strict=True)):
        ks.set(p, VALUE)
        ks.set(v, VALUE, ttl_ms=60_000 + i)
    ks.maxmemory = ks.used_memory
    written = []
    for i in range(0, 2_000, 4):
        batch = [(b"n:%05d" % j, VALUE, 0, Condition.ALWAYS, False) for j in range(i, i + 4)]
        assert ks.set_many(batch) == [True] * 4
        written.extend(e[0] for e in batch)
        assert held(ks, [e[0] for e in batch]) == [e[0] for e in batch]
        assert ks.used_memory <= ks.maxmemory
    lost_persistent = len(persistent) - len(held(ks, persistent))
    lost_volatile = len(volatile) - len(held(ks, volatile))
    lost_written = len(written) - len(held(ks, written))
    assert lost_persistent + lost_volatile + lost_written == ks.stats.evicted
    # Roughly uniform: each kind loses about its share.
    assert lost_persistent > 0.25 * ks.stats.evicted
    assert lost_volatile > 0.25 * ks.stats.evicted


@pytest.mark.parametrize("policy", VOLATILE)
def test_volatile_policies_without_ttl_keys_refuse_and_evict_nothing(policy):
    ks, _ = make(policy)
    keys = [b"p:%04d" % i for i in range(500)]
    for key in keys:
        ks.set(key, VALUE)
    ks.maxmemory = ks.used_memory
    before = (ks.key_count, ks.used_memory)
    with pytest.raises(OutOfMemory):
        ks.set(b"new", VALUE)
    with pytest.raises(OutOfMemory):
        ks.set(b"new", VALUE, ttl_ms=1_000)
    assert (ks.key_count, ks.used_memory) == before
    assert ks.stats.evicted == 0
    assert held(ks, keys) == keys


# ---- refusals ----------------------------------------------------------------


def test_noeviction_refuses_writes_that_do_not_fit_and_changes_nothing():
    ks, clock = make(EvictionPolicy.NOEVICTION)
    keys = [b"k:%03d" % i for i in range(100)]
    for i, key in enumerate(keys):
        ks.set(key, b"%d" % i, ttl_ms=60_000 if i % 2 else 0)
    ks.set(b"big", b"b" * 1000)
    ks.maxmemory = ks.used_memory + 50  # less room than any new entry needs
    snapshot = (ks.key_count, ks.used_memory, ks.ttl_key_count())

    with pytest.raises(OutOfMemory):
        ks.set(b"new", b"x")
    with pytest.raises(OutOfMemory):
        ks.set(b"k:000", b"y" * 500)  # overwrite growing past the limit
    with pytest.raises(OutOfMemory):
        ks.set_many(
            [
                (b"k:002", b"22", 0, Condition.ALWAYS, False),  # fits on its own
                (b"new", b"x", 0, Condition.ALWAYS, False),
            ]
        )
    with pytest.raises(OutOfMemory):
        ks.incr(b"counter", 1)
    with pytest.raises(OutOfMemory):
        ks.set_with_deadline(b"new", b"x", clock.now + 1_000)

    assert (ks.key_count, ks.used_memory, ks.ttl_key_count()) == snapshot
    assert ks.stats.evicted == 0
    for i, key in enumerate(keys):
        assert ks.get(key) == b"%d" % i
        assert ks.pttl(key) == (60_000 if i % 2 else -1)
    assert ks.get(b"big") == b"b" * 1000
    assert not ks.exists(b"new")
    assert not ks.exists(b"counter")
    assert ks.get_many([b"k:000", b"k:001", b"new"]) == [b"0", b"1", None]

    # Writes that shrink or fit still go through, and freeing memory makes room.
    assert ks.set(b"big", b"small")
    assert ks.incr(b"k:002", 5) == 7  # still "2": the refused batch changed nothing
    assert ks.delete(b"k:003")
    assert ks.set(b"new", b"x")
    assert ks.used_memory <= ks.maxmemory


@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_write_larger_than_maxmemory_is_refused_without_evicting(policy):
    ks, _ = make(policy, maxmemory=50_000)
    keys = [b"k:%03d" % i for i in range(100)]
    for key in keys:
        ks.set(key, VALUE, ttl_ms=60_000)
    before = (ks.key_count, ks.used_memory)
    assert ks.used_memory < 40_000
    with pytest.raises(OutOfMemory):
        ks.set(b"huge", b"h" * 50_000, ttl_ms=60_000)
    with pytest.raises(OutOfMemory):
        ks.set(b"k:000", b"h" * 50_000, keep_ttl=True)
    # Each entry would fit on its own; together they are larger than maxmemory.
    with pytest.raises(OutOfMemory):
        ks.set_many([(b"a%d" % i, b"h" * 12_000, 0, Condition.ALWAYS, False) for i in range(5)])
    assert (ks.key_count, ks.used_memory) == before
    assert ks.stats.evicted == 0
    assert held(ks, keys) == keys


def test_set_many_with_a_repeated_key_never_overshoots():
    # The batch first shrinks then grows the same key: the estimate must follow
    # the key through the batch rather than compare each entry with the original.
    ks, _ = make(EvictionPolicy.NOEVICTION)
    ks.set(b"k", b"b" * 1000)
    ks.set(b"other", VALUE)
    ks.maxmemory = ks.used_memory
    before = ks.used_memory
    with pytest.raises(OutOfMemory):
        ks.set_many(
            [
                (b"k", b"s", 0, Condition.ALWAYS, False),
                (b"k", b"b" * 1500, 0, Condition.ALWAYS, False),
            ]
        )
    assert ks.used_memory == before
    assert ks.get(b"k") == b"b" * 1000
    # A TTL dropped and added back within one batch costs nothing overall.
    ks.maxmemory = 0
    ks.set(b"t", VALUE, ttl_ms=5_000)
    ks.maxmemory = ks.used_memory
    assert ks.set_many(
        [
            (b"t", VALUE, 0, Condition.ALWAYS, False),
            (b"t", VALUE, 9_000, Condition.ALWAYS, False),
        ]
    ) == [True, True]
    assert ks.pttl(b"t") == 9_000
    assert ks.used_memory == ks.maxmemory


@pytest.mark.parametrize(
    "policy", [EvictionPolicy.ALLKEYS_LRU, EvictionPolicy.VOLATILE_LRU, EvictionPolicy.VOLATILE_TTL]
)
def test_overwriting_the_best_victim_evicts_another_key(policy):
    # All keys share one slot (hash tag), and the key being overwritten is both
    # the least recently used and the nearest to expiry, so it is the policy's
    # first choice; it is protected, so another key has to go instead.
    ks, clock = make(policy)
    keys = [b"{u}%02d" % i for i in range(10)]
    for i, key in enumerate(keys):
        ks.set(key, VALUE, ttl_ms=10_000 + i)
        clock.now += 200
    ks.maxmemory = ks.used_memory
    assert ks.set(keys[0], VALUE * 2, keep_ttl=True)
    assert ks.get(keys[0]) == VALUE * 2
    assert ks.used_memory <= ks.maxmemory
    assert ks.stats.evicted >= 1
    assert ks.key_count == 10 - ks.stats.evicted


# ---- the limit holds under a mixed workload ------------------------------------


@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_memory_stays_within_maxmemory_after_every_write(policy):
    ks, clock = make(policy, maxmemory=40_000, seed=11)
    rng = random.Random(f"workload-{policy.value}")
    # Mostly spread keys, plus a group sharing one slot.
    names = [b"k%04d" % i for i in range(600)] + [b"{tag}%02d" % i for i in range(40)]
    sizes = [0, 1, 10, 100, 400, 1_500]
    ttls = [0, 0, 300, 5_000, 60_000]
    refused = 0

    def entry():
        return (
            rng.choice(names),
            b"x" * rng.choice(sizes),
            rng.choice(ttls),
            rng.choice(list(Condition)),
            rng.random() < 0.2,
        )

    for _ in range(6_000):
        op = rng.random()
        try:
            if op < 0.35:
                key, value, ttl_ms, condition, keep_ttl = entry()
                ks.set(key, value, ttl_ms=ttl_ms, condition=condition, keep_ttl=keep_ttl)
            elif op < 0.50:
                batch = [entry() for _ in range(rng.randint(1, 5))]
                batch += [(batch[0][0], *entry()[1:])]  # the same key again
                ks.set_many(batch)
            elif op < 0.57:
                ks.incr(rng.choice(names), rng.randint(-(10**6), 10**6))
            elif op < 0.64:
                ttl_ms = rng.choice(ttls)
                deadline = clock.now + ttl_ms if ttl_ms else 0
                ks.set_with_deadline(rng.choice(names), b"y" * rng.choice(sizes), deadline)
            elif op < 0.74:
                ks.delete(rng.choice(names))
            elif op < 0.78:
                ks.persist(rng.choice(names))
            elif op < 0.90:
                ks.get(rng.choice(names))
            elif op < 0.96:
                clock.now += rng.randint(0, 300)
            else:
                ks.run_expiry_cycle()
        except OutOfMemory:
            refused += 1
        except NotAnInteger:
            pass
        assert 0 <= ks.used_memory <= ks.maxmemory
    if policy is EvictionPolicy.NOEVICTION:
        assert refused > 0
        assert ks.stats.evicted == 0
    elif not policy.volatile:
        # Every single write fits under maxmemory, so these never refuse.
        assert refused == 0
        assert ks.stats.evicted > 0
    else:
        assert ks.stats.evicted > 0
    assert ks.key_count > 0
