"""The replication stream between a PrimaryReplication and a ReplicaSync, over real gRPC.

Both ends run in this process on a loopback port: these tests exercise the
sync protocol itself (full sync, live operations, partial resync, acks);
tests with real server processes cover failover.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from slotcache_server.keyspace import EvictionPolicy, Keyspace
from slotcache_server.replication.primary import ReplicationTimeout
from tests.support.replication import Pair, eventually


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    p = Pair(Keyspace())
    await p.start_primary()
    try:
        yield p
    finally:
        await p.stop()


async def test_full_sync_then_live_operations(pair: Pair) -> None:
    ks = pair.primary_ks
    for i in range(2000):
        ks.set(b"k%d" % i, b"v%d" % i, ttl_ms=10_000_000 if i % 3 == 0 else 0)
    pair.replica.start()
    assert await eventually(pair.in_sync)
    assert pair.primary.full_syncs == 1
    # Every kind of change reaches the replica as its effect.
    ks.set(b"new", b"1")
    ks.delete(b"k1")
    ks.expire(b"k2", 50_000)
    ks.persist(b"k3")
    ks.incr(b"counter", 5)
    ks.set_many([(b"m1", b"a", 0, 0, False), (b"m2", b"b", 1000, 0, False)])  # type: ignore[list-item]
    assert await eventually(pair.in_sync)
    assert pair.replica_ks.get(b"counter") == b"5"
    assert pair.replica_ks.pttl(b"k3") == -1


async def test_writes_during_a_full_sync_are_not_lost(pair: Pair) -> None:
    ks = pair.primary_ks
    for i in range(50_000):
        ks.set(b"key:%d" % i, b"x" * 50)
    pair.replica.start()
    # Keep writing (overwrites, deletes, new keys) while the snapshot streams.
    for round_ in range(50):
        for i in range(round_, 50_000, 997):
            ks.set(b"key:%d" % i, b"round-%d" % round_)
        ks.delete(b"key:%d" % (round_ * 7))
        ks.set(b"late:%d" % round_, b"y")
        await asyncio.sleep(0.002)
    assert await eventually(pair.in_sync, 20)
    assert pair.primary.full_syncs == 1


async def test_reconnect_within_the_backlog_is_a_partial_sync(pair: Pair) -> None:
    ks = pair.primary_ks
    ks.set(b"a", b"1")
    pair.replica.start()
    assert await eventually(pair.in_sync)
    await pair.replica.stop()
    for i in range(100):
        ks.set(b"while-away:%d" % i, b"v")
    pair.replica.start()
    assert await eventually(pair.in_sync)
    assert pair.primary.full_syncs == 1
    assert pair.primary.partial_syncs == 1
    assert pair.replica.full_syncs == 1


async def test_reconnect_beyond_the_backlog_needs_a_full_sync() -> None:
    pair = Pair(Keyspace(), backlog_bytes=200)
    await pair.start_primary()
    try:
        pair.primary_ks.set(b"a", b"1")
        pair.replica.start()
        assert await eventually(pair.in_sync)
        await pair.replica.stop()
        for i in range(100):
            pair.primary_ks.set(b"while-away:%d" % i, b"v" * 20)
        pair.replica.start()
        assert await eventually(pair.in_sync)
        assert pair.primary.full_syncs == 2
    finally:
        await pair.stop()


async def test_wait_for_replicas(pair: Pair) -> None:
    pair.replica.start()
    assert await eventually(pair.in_sync)
    pair.primary_ks.set(b"w", b"1")
    assert await pair.primary.wait_for(pair.primary.offset, 1, timeout=5) == 1
    await pair.replica.stop()
    pair.primary_ks.set(b"w", b"2")
    started = time.monotonic()
    with pytest.raises(ReplicationTimeout) as info:
        await pair.primary.wait_for(pair.primary.offset, 1, timeout=0.2)
    assert 0.15 < time.monotonic() - started < 2
    assert info.value.required == 1


async def test_replica_hides_expired_keys_and_leaves_deleting_to_the_primary() -> None:
    clock = [1_700_000_000_000]
    primary_ks = Keyspace(clock_ms=lambda: clock[0])
    pair = Pair(primary_ks)
    pair.replica_ks = Keyspace(clock_ms=lambda: clock[0])
    pair.replica.keyspace = pair.replica_ks
    await pair.start_primary()
    try:
        primary_ks.set(b"short", b"v", ttl_ms=100)
        pair.replica.start()
        assert await eventually(pair.in_sync)
        clock[0] += 200
        assert pair.replica_ks.get(b"short") is None  # hidden...
        assert pair.replica_ks.key_count == 1  # ...but not deleted by the replica
        assert primary_ks.get(b"short") is None  # the primary expires it
        assert await eventually(lambda: pair.replica_ks.key_count == 0)
    finally:
        await pair.stop()


async def test_evictions_reach_the_replica_as_deletes() -> None:
    primary_ks = Keyspace(maxmemory=200_000, policy=EvictionPolicy.ALLKEYS_LRU)
    pair = Pair(primary_ks)
    await pair.start_primary()
    try:
        pair.replica.start()
        assert await eventually(pair.in_sync)
        for i in range(5000):
            primary_ks.set(b"e%d" % i, b"z" * 100)
        assert primary_ks.stats.evicted > 0
        assert await eventually(pair.in_sync)
    finally:
        await pair.stop()
