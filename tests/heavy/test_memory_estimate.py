"""used_memory, the per-entry estimate, against what tracemalloc measures.

tracemalloc counts the bytes requested from Python's allocators, without
pymalloc's size-class rounding or malloc's headers, which the estimate does
model; both are compared over the same data, and must agree within 20%.
Tracing every allocation of tens of thousands of entries is slow, so this
runs outside the unit tier.
"""

import gc
import random
import tracemalloc

import pytest

from slotcache.contract import SLOT_COUNT
from slotcache_server.keyspace import EvictionPolicy, Keyspace
from tests.support.keyspace import FakeClock

TOLERANCE = 0.20


def key_of(i):
    return b"%016d" % i  # 16 bytes


def value_of(i, size):
    # A distinct object per entry, as values decoded off the wire would be.
    return (b"%d:" % i).ljust(size, b"x")


def load_and_measure(policy, n, sizes, with_ttl):
    """Fill a fresh keyspace; return it and the traced bytes the entries took."""
    gc.collect()
    tracemalloc.start()
    try:
        ks = Keyspace(policy=policy, clock_ms=FakeClock(), random=random.Random(1).random)
        gc.collect()
        baseline = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            ttl_ms = 60_000 + i if with_ttl else 0
            ks.set(key_of(i), value_of(i, sizes[i % len(sizes)]), ttl_ms=ttl_ms)
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    return ks, traced


def check_estimate(ks, traced, label):
    ratio = ks.used_memory / traced
    print(f"\n{label}: estimate {ks.used_memory} B, traced {traced} B, ratio {ratio:.3f}")
    assert 1 - TOLERANCE <= ratio <= 1 + TOLERANCE, f"{label}: ratio {ratio:.3f}"


def delete_all(ks, n):
    assert ks.delete_many(key_of(i) for i in range(n)) == n
    assert ks.key_count == 0
    assert ks.ttl_key_count() == 0
    assert list(ks.nonempty_slots()) == []
    assert ks.used_memory == 0


@pytest.mark.parametrize("policy", [EvictionPolicy.NOEVICTION, EvictionPolicy.ALLKEYS_LRU])
@pytest.mark.parametrize("with_ttl", [False, True], ids=["no-ttl", "ttl"])
def test_estimate_tracks_tracemalloc_for_small_values(policy, with_ttl):
    n = 200_000
    ks, traced = load_and_measure(policy, n, [100], with_ttl)
    assert ks.key_count == n
    check_estimate(ks, traced, f"{policy.value} ttl={with_ttl} 200k x 100 B")
    delete_all(ks, n)


@pytest.mark.parametrize(
    ("size", "n"),
    [(10, 200_000), (1024, 50_000), (100 * 1024, 1_000)],
    ids=["10B", "1KiB", "100KiB"],
)
def test_estimate_tracks_tracemalloc_across_value_sizes(size, n):
    ks, traced = load_and_measure(EvictionPolicy.NOEVICTION, n, [size], False)
    check_estimate(ks, traced, f"noeviction {n} x {size} B")
    delete_all(ks, n)


def test_estimate_tracks_tracemalloc_for_mixed_sizes_with_ttl_and_lfu():
    n = 30_000
    sizes = [10] * 49 + [1024] * 50 + [100 * 1024]  # 1% of entries are 100 KiB
    ks, traced = load_and_measure(EvictionPolicy.ALLKEYS_LFU, n, sizes, True)
    check_estimate(ks, traced, f"allkeys-lfu ttl=True {n} mixed 10 B/1 KiB/100 KiB")
    delete_all(ks, n)


def test_estimate_follows_overwrites_and_ttl_changes():
    # Overwrites change the value size and TTLs come and go; used_memory must
    # land where a keyspace loaded directly with the final state would.
    n = 20_000
    ks = Keyspace(clock_ms=FakeClock(), random=random.Random(1).random)
    for i in range(n):
        ks.set(key_of(i), value_of(i, 100), ttl_ms=60_000 if i % 2 else 0)
    for i in range(n):
        if i % 3 == 0:
            ks.set(key_of(i), value_of(i, 700), keep_ttl=True)
        elif i % 3 == 1:
            ks.persist(key_of(i))
        else:
            ks.expire(key_of(i), 30_000)
    direct = Keyspace(clock_ms=FakeClock(), random=random.Random(1).random)
    for i in range(n):
        size = 700 if i % 3 == 0 else 100
        has_ttl = (i % 3 == 0 and i % 2 == 1) or i % 3 == 2
        direct.set(key_of(i), value_of(i, size), ttl_ms=60_000 if has_ttl else 0)
    assert ks.used_memory == direct.used_memory
    assert ks.ttl_key_count() == direct.ttl_key_count()
    delete_all(ks, n)


def test_per_slot_memory_adds_up_to_the_total():
    ks = Keyspace(policy=EvictionPolicy.ALLKEYS_LRU, random=random.Random(5).random)
    for i in range(5000):
        ks.set(b"k%d" % i, b"v" * (i % 300), ttl_ms=1000 if i % 3 else 0)
    for i in range(0, 5000, 7):
        ks.delete(b"k%d" % i)
    for i in range(0, 5000, 11):
        ks.persist(b"k%d" % i)
    assert sum(ks.slot_memory(s) for s in range(SLOT_COUNT)) == ks.used_memory
    for slot in list(ks.nonempty_slots()):
        ks.clear_slot(slot)
    assert ks.used_memory == 0
    assert all(ks.slot_memory(s) == 0 for s in range(SLOT_COUNT))
