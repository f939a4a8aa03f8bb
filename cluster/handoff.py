"""Handing a primary's slots to its replica before the primary stops.

Stopping a primary outright leaves its slots unserved until the cluster's
failure detection (node_timeout) promotes a replica. Instead, a primary
asked to stop asks its most up-to-date in-sync replica for the graceful
manual failover (the one ``clusterctl failover`` runs, over the same Admin
RPC), which pauses this node's writes until the replica holds them all, so
no acknowledged write is lost; once this node sees itself demoted it
drains and exits. Any failure just falls back to a plain stop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import grpc

from slotcache.v1 import admin_pb2, admin_pb2_grpc

from .peer_channels import open_peer_channel
from .security.member_rpc import method_path
from .security.node_auth import NodeAuth

if TYPE_CHECKING:
    from .membership.machine import Membership
    from .replication.primary import PrimaryReplication

log = logging.getLogger(__name__)

FAILOVER = method_path(admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name, "Failover")

POLL_S = 0.01


def owns_slots(membership: Membership) -> bool:
    """This node is a primary with slots: stopping it leaves them unserved."""
    me = membership.myself
    return bool(me.is_primary and membership.slot_ranges(me.id))


def live_replicas(membership: Membership) -> int:
    """Replicas of this node in the cluster view that are not suspected of failing."""
    me = membership.myself.id
    return sum(1 for p in membership.peers() if p.primary_id == me and not p.failing)


def pick_replica(primary: PrimaryReplication) -> bytes | None:
    """The id of the in-sync replica that holds the most of this node's stream."""
    links = [link for link in primary.links.values() if not link.syncing]
    if not links:
        return None
    return max(links, key=lambda link: link.acked).replica_id


async def hand_off(
    membership: Membership,
    primary: PrimaryReplication | None,
    budget_s: float,
    auth: NodeAuth | None = None,
) -> bool:
    """Make an in-sync replica primary in this node's place; True once this node is a replica.

    Bounded by ``budget_s``. A node that is not a slot-owning primary, or
    has no in-sync replica, has nothing to hand off.
    """
    if primary is None or not owns_slots(membership):
        return False
    replica_id = pick_replica(primary)
    peer = next((p for p in membership.peers() if p.id == replica_id), None)
    if peer is None:
        log.info("no in-sync replica to hand the slots to; stopping as primary")
        return False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget_s
    log.info(
        "handing the slots to replica %s (%s) before stopping", peer.hex_id, peer.address.client
    )
    request = admin_pb2.FailoverRequest(
        mode=admin_pb2.FAILOVER_MODE_GRACEFUL, wait_ms=int(budget_s * 1000)
    )
    # The replica's Admin port needs proof that a member, not a client, asks.
    metadata = (auth or NodeAuth()).call_metadata(FAILOVER, audience=peer.id)
    try:
        async with open_peer_channel(peer.address.client) as channel:
            await admin_pb2_grpc.AdminStub(channel).Failover(
                request, timeout=budget_s, metadata=metadata
            )
    except grpc.aio.AioRpcError as exc:
        log.warning("replica %s refused the failover: %s", peer.hex_id, exc.details())
        return False
    # The replica's election reaches this node over the bus shortly after.
    while membership.myself.is_primary:
        if loop.time() >= deadline:
            log.warning("replica %s did not take over in %.1fs", peer.hex_id, budget_s)
            return False
        await asyncio.sleep(POLL_S)
    log.info("replica %s took over the slots", peer.hex_id)
    return True
