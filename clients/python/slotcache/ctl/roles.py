"""A node's role in a ClusterState view: primary, replica or proxy.

Kept apart from :mod:`replicas` so that modules below it (``cluster_ops``,
which ``views`` imports) can ask too; every command that picks nodes for
slots or for replication asks here, so a proxy is never picked.
"""

from __future__ import annotations

from slotcache.v1 import admin_pb2, cache_pb2


def is_replica(peer: admin_pb2.PeerState) -> bool:
    """The node is a replica in this view."""
    return peer.node.role == cache_pb2.ROLE_REPLICA


def is_proxy(peer: admin_pb2.PeerState) -> bool:
    """The node is a proxy: it owns no slots, holds no data and never votes."""
    return peer.node.role == cache_pb2.ROLE_PROXY


def is_primary(peer: admin_pb2.PeerState) -> bool:
    """The node is a primary (with or without slots): the only role slots may go to."""
    return not is_replica(peer) and not is_proxy(peer)


__all__ = ["is_primary", "is_proxy", "is_replica"]
