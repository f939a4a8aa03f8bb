"""Add an empty node to a running cluster, as a slotless primary or as a replica.

Everything that can be refused is checked before the first change: the new
node must be a lone, empty, cluster-mode node whose bus answers; the
existing node must be in cluster mode; the primary to follow must be one
primary, known to the cluster and not failed. Only then is the new node
introduced (``Meet`` on the existing node with the new node's bus address)
and, for a replica, told to follow its primary. The operation returns once
every node knows the new node in its role and, for a replica, once it has
its first copy of the primary's data.
"""

from __future__ import annotations

from dataclasses import dataclass

from slotcache.ctl.cluster_ops import check_fresh
from slotcache.ctl.replicas import find_node, label, resolve_primary, sync_problem
from slotcache.ctl.roles import is_proxy, is_replica
from slotcache.ctl.rpc import (
    NodeHandle,
    OperationError,
    Progress,
    check_bus,
    ignore_progress,
    myself,
    wait_for,
)
from slotcache.ctl.wording import counted
from slotcache.v1 import admin_pb2


@dataclass(frozen=True)
class AddedNode:
    """The outcome of :func:`add_node`."""

    address: str
    id: str
    primary_id: str | None
    primary_address: str | None
    # Nodes in the cluster now, the new one included; every one of them knows it.
    cluster_size: int
    # Keys the new node holds once in sync (0 for a primary, which starts empty).
    keys: int
    # A proxy (--proxy yes) joins without slots for good and forwards every call.
    proxy: bool = False

    @property
    def role(self) -> str:
        """``primary``, ``replica`` or ``proxy``."""
        if self.proxy:
            return "proxy"
        return "replica" if self.primary_id else "primary"


def add_node(
    new_address: str,
    existing_address: str,
    replica_of: str | None = None,
    *,
    timeout: float = 5.0,
    wait_s: float = 60.0,
    progress: Progress = ignore_progress,
) -> AddedNode:
    """Introduce the node at ``new_address`` to the cluster of ``existing_address``.

    ``replica_of`` is a primary's id or a unique prefix of it; without it
    the new node stays a primary without slots until slots are moved to it.
    """
    with (
        NodeHandle.open(new_address, timeout) as new,
        NodeHandle.open(existing_address, timeout) as existing,
    ):
        cluster = existing.state()
        if not cluster.cluster_enabled:
            raise OperationError(
                f"{existing_address} is not in cluster mode, so it has no cluster to join"
            )
        fresh = new.state()
        known = find_node(cluster, fresh.myself)
        if known is not None:
            raise OperationError(
                f"{new_address} is already a member of this cluster ({label(known)}); "
                "nothing was changed"
            )
        check_fresh(new, fresh)
        proxy = is_proxy(myself(fresh))
        if proxy and replica_of:
            raise OperationError(
                f"{new_address} is a proxy (--proxy yes): a proxy never replicates; "
                "add it without --replica-of; nothing was changed"
            )
        primary = resolve_primary(cluster, replica_of, existing_address) if replica_of else None
        new_bus = myself(fresh).bus_address
        check_bus(new_bus, timeout)
        if primary is not None:
            check_bus(primary.bus_address, timeout)

        progress(f"introducing {new_address} to the cluster through {existing_address}")
        existing.meet(new_bus)
        if primary is not None:
            _follow(new, primary, cluster.myself)

        # A node marked failed cannot answer; the others must all learn about the new node.
        members = [p for p in cluster.peers if "fail" not in p.flags]
        primary_id = primary.node.id if primary is not None else ""
        _wait_until_known(new, members, fresh.myself, primary_id, timeout, wait_s, progress)
        keys = 0
        if primary is not None:
            keys = _wait_until_in_sync(new, label(primary), wait_s, progress)
        return AddedNode(
            new_address,
            fresh.myself,
            primary_id or None,
            primary.node.address if primary is not None else None,
            len(cluster.peers) + 1,
            keys,
            proxy,
        )


def _follow(new: NodeHandle, primary: admin_pb2.PeerState, introducer: str) -> None:
    """Make the freshly introduced node a replica of ``primary``.

    It must know its primary before it can follow it; meeting it directly is
    quicker than waiting for gossip to carry it over. The node is in the
    cluster by now, so a failure here must say it did change something.
    """
    try:
        if primary.node.id != introducer:
            new.meet(primary.bus_address)
        new.replicate(primary.node.id)
    except OperationError as exc:
        raise OperationError(
            f"{new.address} joined the cluster but could not become a replica of "
            f"{label(primary)}: {exc}; it stays a primary without slots"
        ) from None


def _wait_until_known(
    new: NodeHandle,
    members: list[admin_pb2.PeerState],
    new_id: str,
    primary_id: str,
    timeout: float,
    wait_s: float,
    progress: Progress,
) -> None:
    """Poll until every member sees the new node in its role, and the new node sees them all."""
    handles = [NodeHandle.open(p.node.address, timeout) for p in members]
    try:

        def pending() -> str | None:
            late = [h.address for h in handles if not _sees(h.state(), new_id, primary_id)]
            mine = new.state()
            unknown = [p for p in members if find_node(mine, p.node.id) is None]
            if unknown:
                late.append(f"{new.address} to know {len(unknown)} more")
            if not late:
                return None
            total = len(members) + 1
            return (
                f"{total - len(late)} of {total} nodes know each other; "
                f"waiting for {', '.join(late)}"
            )

        wait_for(pending, wait_s, "the cluster did not learn about the new node", progress)
    finally:
        for handle in handles:
            handle.close()


def _sees(state: admin_pb2.ClusterStateReply, new_id: str, primary_id: str) -> bool:
    """The view knows the new node, as a replica of ``primary_id`` or as a primary."""
    peer = find_node(state, new_id)
    if peer is None:
        return False
    if primary_id:
        return is_replica(peer) and peer.node.primary_id == primary_id
    return not is_replica(peer)


def _wait_until_in_sync(new: NodeHandle, primary: str, wait_s: float, progress: Progress) -> int:
    """Poll the new replica until it has its first full copy; return how many keys it holds."""
    keys = [0]

    def pending() -> str | None:
        info = new.info()
        keys[0] = info.stats.get("keys", 0)
        if info.server.get("role") != "replica":
            problem: str | None = "it is not a replica yet"
        else:
            problem = sync_problem(info.stats)
        if problem is None:
            return None
        return (
            f"{new.address} is syncing from {primary}: {problem}, {counted(keys[0], 'key')} so far"
        )

    wait_for(pending, wait_s, "the new replica did not get in sync", progress)
    return keys[0]
