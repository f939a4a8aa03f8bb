"""Who serves each slot, as the request path and the Topology RPC see it.

A standalone node serves every slot. A cluster node reads the membership
state machine's slot table. Either way the request path asks the same two
questions, cheaply: is this slot mine, and if not, who owns it.
"""

from __future__ import annotations

from dataclasses import dataclass

from slotcache.v1 import admin_pb2, cache_pb2

from .membership.machine import Membership
from .membership.model import FAIL, REPLICA, Peer, flag_names
from .slots import SLOT_COUNT


@dataclass(frozen=True, slots=True)
class Owner:
    """The node to send a slot's requests to, with the config epoch of its claim.

    Clients order what they learn about a slot by that epoch, as the nodes do.
    """

    id: str
    address: str
    epoch: int


class Ownership:
    """Slot ownership for routing; standalone nodes own everything."""

    def __init__(self, membership: Membership, cluster_enabled: bool) -> None:
        self.membership = membership
        self.cluster_enabled = cluster_enabled
        self._my_id = membership.id

    def is_local(self, slot: int) -> bool:
        """This node serves ``slot``."""
        return not self.cluster_enabled or self.membership.slots.owner(slot) == self._my_id

    def owner(self, slot: int) -> Owner | None:
        """The node that serves ``slot``, or None when it is unassigned."""
        if not self.cluster_enabled:
            me = self.membership.myself
            return Owner(me.hex_id, me.address.client, me.config_epoch)
        peer = self.membership.owner_of(slot)
        if peer is None:
            return None
        return Owner(peer.hex_id, peer.address.client, peer.config_epoch)

    @property
    def ok(self) -> bool:
        """Requests may be served (a standalone node is always ok)."""
        return not self.cluster_enabled or self.membership.ok

    @property
    def allow_reads_when_down(self) -> bool:
        """Owned slots may still be read while the cluster is down."""
        return self.membership.config.allow_reads_when_down

    # ---- views -------------------------------------------------------------

    def topology(self) -> cache_pb2.TopologyReply:
        """The Topology RPC's answer."""
        m = self.membership
        reply = cache_pb2.TopologyReply(
            epoch=m.current_epoch, cluster_ok=self.ok, responder_id=m.myself.hex_id
        )
        nodes = [m.myself] if not self.cluster_enabled else list(m.nodes.values())
        for peer in nodes:
            reply.nodes.append(self._node_info(peer))
        return reply

    def _node_info(self, peer: Peer) -> cache_pb2.NodeInfo:
        m = self.membership
        ranges = m.slot_ranges(peer.id) if self.cluster_enabled else [(0, SLOT_COUNT - 1)]
        return cache_pb2.NodeInfo(
            id=peer.hex_id,
            address=peer.address.client,
            role=cache_pb2.ROLE_REPLICA if peer.flags & REPLICA else cache_pb2.ROLE_PRIMARY,
            primary_id=peer.primary.hex(),
            slots=[cache_pb2.SlotRange(start=s, end=e) for s, e in ranges],
            config_epoch=peer.config_epoch,
            failing=bool(peer.flags & FAIL),
        )

    def cluster_state(self, now: int) -> admin_pb2.ClusterStateReply:
        """The Admin ClusterState RPC's answer: everything this node knows."""
        m = self.membership
        reply = admin_pb2.ClusterStateReply(
            cluster_enabled=self.cluster_enabled,
            myself=m.myself.hex_id,
            cluster_ok=self.ok,
            current_epoch=m.current_epoch,
            slots_assigned=SLOT_COUNT - m.slots.unassigned()
            if self.cluster_enabled
            else SLOT_COUNT,
            known_nodes=len(m.nodes) if self.cluster_enabled else 1,
            size=m.size if self.cluster_enabled else 1,
            node_timeout_ms=m.config.node_timeout_ms,
        )
        nodes = [m.myself] if not self.cluster_enabled else list(m.nodes.values())
        for peer in nodes:
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
