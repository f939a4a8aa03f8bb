"""Who serves each slot, as the request path and the Topology RPC see it.

Every node answers the same questions from its membership's slot table: is
this slot mine, and if not, who owns it. A standalone node is a cluster of
one that owns every slot, so the request path never asks which mode it is
in. This is the :class:`~slotcache_server.routing.View` the routing decision
reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from slotcache.contract import SLOT_COUNT
from slotcache.v1 import admin_pb2, cache_pb2

from .holds import WriteHolds
from .membership.machine import Membership
from .membership.model import FAIL, Peer, flag_names, role_name
from .routing import Owner

_ROLES = {
    "primary": cache_pb2.ROLE_PRIMARY,
    "replica": cache_pb2.ROLE_REPLICA,
    "proxy": cache_pb2.ROLE_PROXY,
}


class Ownership:
    """Slot ownership for routing, read from the membership at each call."""

    def __init__(
        self,
        membership: Membership,
        holds: WriteHolds,
        replica_synced: Callable[[], bool] = lambda: False,
    ) -> None:
        self.membership = membership
        self._my_id = membership.id
        # The slot table lives as long as the membership; its lookups are bound once.
        self._owner = membership.slots.owner
        self._count = membership.slots.count
        self._view = membership.view
        self._holds = holds
        # Whether this node, as a replica, holds a complete copy of its primary.
        self._replica_synced = replica_synced

    def is_local(self, slot: int) -> bool:
        """This node serves ``slot``."""
        return self._owner(slot) == self._my_id

    def owner(self, slot: int) -> Owner | None:
        """The node that serves ``slot``, or None when it is unassigned."""
        peer = self.membership.owner_of(slot)
        if peer is None:
            return None
        return Owner(peer.hex_id, peer.address.client, peer.config_epoch)

    @property
    def ok(self) -> bool:
        """Requests may be served."""
        return self._view.ok

    def serves_all(self) -> bool:
        """The cluster is ok and this node owns every slot: :func:`~.routing.decide` is LOCAL.

        The Redis-protocol listener asks this once per read, so it reads the
        fields directly rather than through the properties.
        """
        return self._view.ok and self._count(self._my_id) == SLOT_COUNT

    @property
    def owns_every_slot(self) -> bool:
        """This node serves all slots (a standalone node, or a cluster of one)."""
        return self._count(self._my_id) == SLOT_COUNT

    @property
    def allow_reads_when_down(self) -> bool:
        """Owned slots may still be read while the cluster is down."""
        return self.membership.config.allow_reads_when_down

    def replica_serves(self, slots: Sequence[int]) -> bool:
        """This node replicates the owner of every slot and holds a complete copy."""
        primary = self.membership.myself.primary_id
        owner = self._owner
        return bool(primary) and all(owner(s) == primary for s in slots) and self._replica_synced()

    def handing_off(self, slot: int) -> bool:
        """Writes to ``slot`` are held for a migration's handoff."""
        return self._holds.handing_off(slot)

    # ---- views -------------------------------------------------------------

    def topology(self) -> cache_pb2.TopologyReply:
        """The Topology RPC's answer."""
        m = self.membership
        reply = cache_pb2.TopologyReply(
            epoch=m.current_epoch, cluster_ok=self.ok, responder_id=m.myself.hex_id
        )
        for peer in m.nodes.values():
            reply.nodes.append(self._node_info(peer))
        return reply

    def _node_info(self, peer: Peer) -> cache_pb2.NodeInfo:
        m = self.membership
        ranges = m.slot_ranges(peer.id)
        return cache_pb2.NodeInfo(
            id=peer.hex_id,
            address=peer.address.client,
            role=_ROLES[role_name(peer.flags)],
            primary_id=peer.primary_id.hex(),
            slots=[cache_pb2.SlotRange(start=s, end=e) for s, e in ranges],
            config_epoch=peer.config_epoch,
            failing=bool(peer.flags & FAIL),
        )

    def cluster_state(self, now: int, cluster_enabled: bool) -> admin_pb2.ClusterStateReply:
        """The Admin ClusterState RPC's answer: everything this node knows."""
        m = self.membership
        reply = admin_pb2.ClusterStateReply(
            cluster_enabled=cluster_enabled,
            myself=m.myself.hex_id,
            cluster_ok=self.ok,
            current_epoch=m.current_epoch,
            slots_assigned=SLOT_COUNT - m.slots.unassigned(),
            known_nodes=len(m.nodes),
            size=m.size,
            node_timeout_ms=m.config.node_timeout_ms,
        )
        for peer in m.nodes.values():
            flags = flag_names(peer.flags)
            if peer is m.myself:
                flags.insert(0, "myself")
            reply.peers.append(
                admin_pb2.PeerState(
                    node=self._node_info(peer),
                    flags=flags,
                    ping_sent_ms_ago=now - peer.ping_sent if peer.ping_sent else 0,
                    pong_received_ms_ago=now - peer.pong_received if peer.pong_received else 0,
                    failure_reports=len(peer.fail_reports),
                    bus_address=peer.address.bus,
                )
            )
        return reply
