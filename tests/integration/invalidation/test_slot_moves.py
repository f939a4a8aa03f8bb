"""Clusters: tracked reads stay on their node, and a slot that moves away is invalidated."""

from __future__ import annotations

import grpc
import pytest

from slotcache.v1 import admin_pb2
from slotcache.v1 import cache_pb2 as pb
from tests.support.nodes import (
    REDIRECT,
    RPC_TIMEOUT,
    Nodes,
    expect_failure,
    key_in_slot,
    owners_by_slot,
    slots_of,
    wait_for,
)
from tests.support.processes import Cluster

pytestmark = pytest.mark.slow

REPLICA_READ = (("slotcache-replica-read", "1"),)


def claim(node, slot: int) -> None:
    node.admin.ClaimSlots(
        admin_pb2.ClaimSlotsRequest(ranges=[pb.SlotRange(start=slot, end=slot)]),
        timeout=RPC_TIMEOUT,
    )


def lost_slots(sub, slot: int) -> list[bytes]:
    """Read messages until one says ``slot`` is no longer served; return the keys seen before."""
    keys: list[bytes] = []
    while True:
        message = sub.next()
        keys.extend(message.keys)
        if any(r.start <= slot <= r.end for r in message.slots):
            return keys


def test_a_claimed_slot_invalidates_what_the_old_owner_tracked(make_nodes, subscribe, keys):
    nodes = make_nodes(3)
    old, new = nodes[0], nodes[1]
    topology = old.topology()
    mine = slots_of(topology, old.address)
    moving, staying = mine[100], mine[7]
    held = key_in_slot(keys(""), moving, "held")
    absent = key_in_slot(keys(""), moving, "absent")
    kept = key_in_slot(keys(""), staying, "kept")
    elsewhere = key_in_slot(keys(""), slots_of(topology, new.address)[0], "elsewhere")
    assert old.set(held, b"v", REDIRECT)
    assert old.set(kept, b"v", REDIRECT)

    sub = subscribe(old.cache)
    watcher = subscribe(old.cache, pb.TRACKING_MODE_BROADCAST, [(moving, moving)])
    assert old.get(held, sub.metadata) == b"v"
    assert old.get(absent, sub.metadata) is None
    assert old.get(kept, sub.metadata) == b"v"
    # A tracked read is never forwarded: a key of another node's slot is MOVED.
    failure = expect_failure(lambda: old.get(elsewhere, sub.metadata))
    assert failure.code == grpc.StatusCode.FAILED_PRECONDITION
    assert failure.reason == "MOVED" and failure.metadata["address"] == new.address

    claim(new, moving)
    assert sorted(sub.keys_until([held, absent])) == sorted([held, absent])
    assert held in lost_slots(watcher, moving)  # the removed key, then the slot
    wait_for(
        lambda: owners_by_slot(old.topology())[moving] == new.address, 5, "the old owner to agree"
    )
    # The slot's keys are now read (and tracked) at the new owner only.
    failure = expect_failure(lambda: old.get(absent, sub.metadata))
    assert failure.reason == "MOVED"
    stats = old.admin.Info(admin_pb2.InfoRequest(), timeout=RPC_TIMEOUT).stats
    assert stats["tracking.keys"] == 1  # kept
    old.set(kept, b"w", REDIRECT)
    assert list(sub.next().keys) == [kept]


def test_a_replica_tracks_reads_and_sees_its_primary_lose_a_slot(make_nodes, subscribe, keys):
    nodes = make_nodes(3, replicas=1)
    primary, new, replica = nodes[0], nodes[1], nodes[3]
    topology = primary.topology()
    slot = slots_of(topology, primary.address)[50]
    held = key_in_slot(keys(""), slot, "held")
    absent = key_in_slot(keys(""), slot, "absent")
    assert primary.set(held, b"v1", REDIRECT)

    sub = subscribe(replica.cache)
    tracked_read = (*sub.metadata, *REPLICA_READ)
    wait_for(lambda: replica.get(held, tracked_read) == b"v1", 5, "the replica to have the key")
    assert replica.get(absent, tracked_read) is None
    # Without replica reads, a tracked read at the replica is redirected, never forwarded.
    assert expect_failure(lambda: replica.get(held, sub.metadata)).reason == "MOVED"

    # Writes reach the replica by replication, and so do their invalidations.
    assert primary.set(held, b"v2", REDIRECT)
    assert list(sub.next().keys) == [held]
    assert replica.get(held, tracked_read) == b"v2"

    # The primary loses the slot: the replica gets no SlotsLost of its own, yet
    # everything it tracked there is invalidated, absent keys included.
    claim(new, slot)
    assert sorted(sub.keys_until([held, absent])) == sorted([held, absent])
    wait_for(
        lambda: (
            replica.admin.Info(admin_pb2.InfoRequest(), timeout=RPC_TIMEOUT).stats["tracking.keys"]
            == 0
        ),
        5,
        "the replica's tracking table to empty",
    )


@pytest.fixture
def make_nodes(servers):
    """``make_nodes(primaries, replicas=0)``: start a cluster; plain stubs for each node."""
    opened: list[Nodes] = []

    def make(primaries: int, replicas: int = 0) -> Nodes:
        cluster = Cluster.start(servers, primaries, 1000, replicas=replicas)
        nodes = Nodes(cluster.addresses)
        opened.append(nodes)
        return nodes

    try:
        yield make
    finally:
        for nodes in opened:
            nodes.close()
