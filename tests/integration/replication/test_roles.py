"""Role switches of NodeReplication: they take effect at once, in the step that decides them."""

from __future__ import annotations

import asyncio
import time

import pytest

from slotcache_server.keyspace import Keyspace
from slotcache_server.replication.backlog import History
from slotcache_server.replication.manager import NodeReplication
from slotcache_server.replication.primary import ReplicationTimeout
from tests.support.replication import Pair, contents, eventually


async def test_a_promotion_forks_the_history_before_the_next_write() -> None:
    pair = Pair(Keyspace())
    await pair.start_primary()
    node = NodeReplication(Keyspace(), 1 << 20, b"n" * 20, lambda: pair.address)
    try:
        node.become_replica()
        pair.primary_ks.set(b"a", b"1")

        def synced() -> bool:
            replica = node.replica
            assert replica is not None
            return replica.synced and not replica.syncing and node.offset == pair.primary.offset

        assert await eventually(synced)
        followed, offset = node.backlog.replid, node.offset

        node.become_primary()
        # A write served right after the promotion belongs to the new history.
        node.keyspace.set(b"b", b"2")
        assert node.backlog.previous == History(followed, offset)
        assert node.backlog.replid != followed
        assert node.backlog.offset == offset + 1
        # And nothing more of the old primary's stream is applied.
        pair.primary_ks.set(b"c", b"3")
        await asyncio.sleep(0.3)
        assert node.keyspace.get(b"c") is None
    finally:
        await node.stop()
        await pair.stop()


async def test_a_replica_whose_primary_changed_reconnects_at_once() -> None:
    # The first primary is unreachable long enough for the retry delay to reach its cap.
    first, second = Pair(Keyspace()), Pair(Keyspace())
    await second.start_primary()
    target = ["127.0.0.1:1"]
    node = NodeReplication(Keyspace(), 1 << 20, b"n" * 20, lambda: target[0])
    try:
        node.become_replica()
        await asyncio.sleep(2.0)
        second.primary_ks.set(b"k", b"v")
        target[0] = second.address
        started = time.monotonic()
        node.become_replica()  # what the node does when its primary changes
        assert await eventually(lambda: contents(node.keyspace) == contents(second.primary_ks))
        assert time.monotonic() - started < 0.5
    finally:
        await node.stop()
        await second.stop()
        await first.stop()


async def test_a_write_waiting_for_replicas_fails_when_its_primary_steps_down() -> None:
    pair = Pair(Keyspace())
    await pair.start_primary()
    try:
        pair.primary_ks.set(b"w", b"1")  # no replica: nobody will acknowledge it
        waiting = asyncio.create_task(pair.primary.wait_for(pair.primary.offset, 1, timeout=5))
        await asyncio.sleep(0.05)
        pair.primary.detach()  # demoted: it must not report the write as replicated
        with pytest.raises(ReplicationTimeout) as info:
            await waiting
        assert (info.value.acked, info.value.required) == (0, 1)
    finally:
        await pair.stop()
