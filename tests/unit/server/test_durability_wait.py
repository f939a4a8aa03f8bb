"""A write that needs replicas waits for expected ones to come in sync, and only for those."""

from __future__ import annotations

import asyncio
import time

import pytest

from slotcache_server.executor import CommandError
from slotcache_server.keyspace import Keyspace
from slotcache_server.replication.manager import NodeReplication
from slotcache_server.replication.primary import PrimaryReplication, ReplicaLink
from slotcache_server.services.durability import Durability

TIMEOUT_S = 0.3


def durability(live: int) -> tuple[Durability, PrimaryReplication]:
    replication = NodeReplication(Keyspace(), 1 << 20, b"n" * 20, lambda: None)
    primary = PrimaryReplication(replication.keyspace, replication.backlog)
    replication.primary = primary
    return Durability(replication, 0, TIMEOUT_S, lambda: live), primary


async def timed(d: Durability, needed: int) -> float:
    began = time.monotonic()
    await d.await_replicas(needed, None)
    return time.monotonic() - began


async def test_without_live_replicas_the_refusal_is_immediate() -> None:
    d, _ = durability(live=0)
    assert await timed(d, 1) < 0.05
    with pytest.raises(CommandError, match="needs 1 replicas but 0 are in sync"):
        d.check_available(1)


async def test_a_replica_coming_back_in_sync_lets_the_write_through() -> None:
    d, primary = durability(live=1)

    def reconnect() -> None:
        primary.links[b"r"] = ReplicaLink(b"r", syncing=False)
        primary.in_sync_changed()

    asyncio.get_running_loop().call_later(0.05, reconnect)
    waited = await timed(d, 1)
    assert 0.04 < waited < TIMEOUT_S
    d.check_available(1)


async def test_an_expected_replica_that_stays_away_is_waited_for_up_to_the_timeout() -> None:
    d, _ = durability(live=1)
    assert await timed(d, 1) == pytest.approx(TIMEOUT_S, abs=0.1)
    with pytest.raises(CommandError):
        d.check_available(1)


async def test_just_after_a_promotion_the_replicas_are_waited_for_whatever_the_view() -> None:
    d, _ = durability(live=0)  # the view still shows them following the old primary
    assert d.replication is not None
    d.replication.promoted_at = time.monotonic()
    assert await timed(d, 1) == pytest.approx(TIMEOUT_S, abs=0.1)
