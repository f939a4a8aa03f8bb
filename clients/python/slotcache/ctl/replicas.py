"""Replication facts clusterctl derives from replies: who follows whom, and who is in sync.

Pure functions over ClusterState and Info replies, shared by ``create``,
``add-node``, ``failover`` and ``check`` so that "in sync" and "which node
is meant" have one definition, and tests can feed hand-made replies.
"""

from __future__ import annotations

from collections.abc import Mapping

from slotcache.ctl.roles import is_proxy, is_replica
from slotcache.ctl.rpc import OperationError
from slotcache.ctl.views import short_id
from slotcache.v1 import admin_pb2

# A replica that has not been caught up for this long is reported as behind. The primary
# streams continuously, so on a healthy link this lag is a few milliseconds.
LAG_WARN_MS = 1000


def refuse_proxy(peer: admin_pb2.PeerState, use: str) -> None:
    """Refuse, changing nothing, to use a proxy as ``use`` says (it has no data, no slots)."""
    if is_proxy(peer):
        raise OperationError(
            f"{label(peer)} is a proxy: it owns no slots and holds no data, so it cannot be "
            f"{use}; nothing was changed"
        )


def label(peer: admin_pb2.PeerState) -> str:
    """``address (short id)``: how messages name a node."""
    return f"{peer.node.address} ({short_id(peer.node.id)})"


def replicas_of(state: admin_pb2.ClusterStateReply, primary_id: str) -> list[admin_pb2.PeerState]:
    """The replicas of ``primary_id`` in this view, by address."""
    found = [p for p in state.peers if is_replica(p) and p.node.primary_id == primary_id]
    return sorted(found, key=lambda p: p.node.address)


def find_node(state: admin_pb2.ClusterStateReply, node_id: str) -> admin_pb2.PeerState | None:
    """The view's entry for ``node_id`` (a full id), if it knows the node."""
    return next((p for p in state.peers if p.node.id == node_id), None)


def resolve_primary(
    state: admin_pb2.ClusterStateReply, wanted: str, where: str
) -> admin_pb2.PeerState:
    """The primary whose id is ``wanted`` or starts with it, in the view of ``where``.

    Ids are long, so people copy the short form from ``nodes``; a prefix that
    matches several nodes is refused rather than guessed.
    """
    prefix = wanted.lower()
    matches = [p for p in state.peers if p.node.id.startswith(prefix)]
    if not matches:
        raise OperationError(
            f"no node of the cluster has an id starting with {wanted} "
            f"(see clusterctl nodes {where}); nothing was changed"
        )
    if len(matches) > 1:
        listed = ", ".join(sorted(label(p) for p in matches))
        raise OperationError(
            f"{wanted} matches {len(matches)} nodes ({listed}); give more digits; "
            "nothing was changed"
        )
    (peer,) = matches
    refuse_proxy(peer, "a primary to replicate")
    if is_replica(peer):
        raise OperationError(
            f"{label(peer)} is a replica (of {short_id(peer.node.primary_id)}), not a primary; "
            "a replica must follow a primary; nothing was changed"
        )
    if "fail" in peer.flags:
        raise OperationError(
            f"{label(peer)} is marked as failed; a new replica could not sync from it; "
            "nothing was changed"
        )
    return peer


def sync_problem(stats: Mapping[str, int]) -> str | None:
    """Why a replica is not in sync with its primary, from its own Info counters; None if it is.

    In sync means what the primary counts in ``repl.replicas_in_sync``: the
    replica has heard from its primary and is past its full sync. A replica
    that is connected but has not been caught up for :data:`LAG_WARN_MS` is
    reported as behind.
    """
    if stats.get("repl.syncing", 0):
        return "a full sync from its primary is in progress"
    lag_ms = stats.get("repl.lag_ms", -1)
    if lag_ms < 0:
        return "it has not heard from its primary yet"
    if lag_ms > LAG_WARN_MS:
        return f"it is {stats.get('repl.lag_ops', 0)} operations and {lag_ms} ms behind its primary"
    return None


def sync_summary(info: admin_pb2.InfoReply) -> str:
    """One cell for tables: how a node's replication is doing, as the node itself reports it."""
    stats = info.stats
    if info.server.get("role") == "replica":
        problem = sync_problem(stats)
        if problem is None:
            return "in sync"
        return "syncing" if stats.get("repl.syncing", 0) else "NOT in sync"
    if not stats.get("repl.replicas", 0):
        return "no replicas"
    return f"{stats.get('repl.replicas_in_sync', 0)}/{stats['repl.replicas']} replicas in sync"
