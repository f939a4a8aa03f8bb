"""A replica that stops reading (cut off) cannot make its primary queue writes without bound."""

from __future__ import annotations

import asyncio

from slotcache_server.keyspace import Keyspace
from slotcache_server.replication.backlog import Backlog
from slotcache_server.replication.primary import PrimaryReplication, ReplicaLink

BACKLOG_BYTES = 4096


def primary_with_replicas() -> tuple[Keyspace, PrimaryReplication, ReplicaLink, ReplicaLink]:
    keyspace = Keyspace()
    primary = PrimaryReplication(keyspace, Backlog(BACKLOG_BYTES))
    primary.attach()
    stalled, healthy = ReplicaLink(b"s", syncing=False), ReplicaLink(b"h", syncing=False)
    primary.links = {b"s": stalled, b"h": healthy}
    return keyspace, primary, stalled, healthy


async def test_a_replica_further_behind_than_the_backlog_is_dropped() -> None:
    keyspace, primary, stalled, healthy = primary_with_replicas()
    for i in range(200):
        keyspace.set(f"k{i}".encode(), b"v" * 100)
        healthy.acked = primary.offset  # this one keeps up
        await asyncio.sleep(0)
    assert b"s" not in primary.links and b"h" in primary.links
    # What was queued for it is freed; only the end-of-stream message is left.
    assert stalled.queue.qsize() == 1
    assert not stalled.queue.get_nowait().WhichOneof("kind")
    assert primary.in_sync_replicas() == 1


async def test_a_replica_within_the_backlog_is_kept() -> None:
    keyspace, primary, stalled, _ = primary_with_replicas()
    for i in range(5):
        keyspace.set(f"k{i}".encode(), b"v" * 100)
        await asyncio.sleep(0)
    assert b"s" in primary.links and stalled.queue.qsize() == 5


async def test_a_replica_in_its_full_sync_is_not_judged_by_its_acknowledgements() -> None:
    keyspace, primary, stalled, _ = primary_with_replicas()
    stalled.syncing = True
    for i in range(200):
        keyspace.set(f"k{i}".encode(), b"v" * 100)
        await asyncio.sleep(0)
    assert b"s" in primary.links


async def test_a_replica_just_past_its_full_sync_is_judged_from_where_the_sync_left_it() -> None:
    keyspace, primary, _, _ = primary_with_replicas()
    for i in range(200):  # the backlog has dropped its oldest operations
        keyspace.set(f"k{i}".encode(), b"v" * 100)
        await asyncio.sleep(0)
    primary.links[b"s"] = fresh = ReplicaLink(b"s", syncing=False, synced_to=primary.offset)
    keyspace.set(b"after", b"v")
    await asyncio.sleep(0)
    assert primary.links.get(b"s") is fresh and fresh.acked == 0
