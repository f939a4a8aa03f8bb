"""Remove a node from a cluster: refuse while it owns slots, forget it everywhere, stop it.

As ``redis-cli --cluster del-node``:

1. A node that owns slots is refused (move them away first with
   ``reshard`` or ``rebalance --weight ID=0``); nothing is changed. A
   drained primary usually became a replica of the node that took its
   last slots (Redis 7 does the same); it owns none, so it can go.
2. The replicas of a primary being removed are moved, one by one, to the
   slot-owning primary with the fewest replicas (``Replicate``), so none is
   left following a node that is gone.
3. Every other node forgets it (``Forget``), all within the minute for
   which a forgotten node is banned from gossip, so no node brings it back.
4. The node is stopped (``Shutdown`` with reset: a graceful stop as on
   SIGTERM that also deletes its node file, so if it is started again it is
   a new, lone node rather than a former member that the others ignore).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from slotcache.contract import to_ranges
from slotcache.ctl.replicas import label, replicas_of
from slotcache.ctl.resharding import ACTIVE_STATES, migration_status, resolve_node
from slotcache.ctl.roles import is_primary
from slotcache.ctl.rpc import (
    NodeHandle,
    OperationError,
    Progress,
    ask_all,
    ignore_progress,
    poll_until,
)
from slotcache.ctl.views import format_ranges, ranges_of, role_name, short_id
from slotcache.ctl.wording import counted
from slotcache.v1 import admin_pb2


@dataclass
class DeletedNode:
    """What :func:`delete_node` did."""

    address: str
    id: str
    # "primary" or "replica" (of primary_id), as the seed saw it.
    role: str
    primary_id: str | None
    # Addresses of the nodes that forgot it.
    forgotten_by: list[str] = field(default_factory=list)
    # (replica address, replica id, new primary id) for each replica that was moved.
    reassigned: list[tuple[str, str, str]] = field(default_factory=list)
    stopped: bool = False
    # Why it could not be stopped (say it was down already).
    stop_error: str | None = None
    # Nodes that could not be asked to forget it (down); the ban covers them only for a minute.
    warnings: list[str] = field(default_factory=list)


def delete_node(
    seed: str,
    wanted: str,
    *,
    timeout: float = 5.0,
    wait_s: float = 30.0,
    progress: Progress = ignore_progress,
) -> DeletedNode:
    """Remove the node whose id is (or starts with) ``wanted`` from the cluster of ``seed``."""
    with NodeHandle.open(seed, timeout) as node:
        state = node.state()
    if not state.cluster_enabled:
        raise OperationError(f"{seed} is not in cluster mode")
    peer = resolve_node(state, wanted, seed)
    node_id, address = peer.node.id, peer.node.address
    _refuse_if_busy(peer, state, timeout)
    deleted = DeletedNode(
        address,
        node_id,
        role_name(peer.node),
        peer.node.primary_id or None,
    )
    others = [p for p in state.peers if p.node.id != node_id]
    if not others:
        raise OperationError(f"{label(peer)} is the only node; nothing was changed")
    replicas = replicas_of(state, node_id)
    if replicas:
        deleted.reassigned = _reassign(state, node_id, replicas, timeout, progress)

    progress(f"asking {counted(len(others), 'node')} to forget {label(peer)}")

    def forget(handle: NodeHandle) -> None:
        try:
            handle.call("Forget", admin_pb2.ForgetRequest(node_id=node_id))
        except OperationError as exc:
            if "unknown node" not in str(exc):  # forgotten already: what we want
                raise

    results = ask_all([p.node.address for p in others], timeout, forget)
    failed = []
    for other in others:
        got = results[other.node.address]
        if isinstance(got, OperationError):
            if "cannot reach" in str(got):
                deleted.warnings.append(
                    f"{label(other)} does not answer, so it still knows the node; "
                    "run del-node again once it is back (within a minute if possible)"
                )
            else:
                failed.append(str(got))
        else:
            deleted.forgotten_by.append(other.node.address)
    if failed:
        raise OperationError(
            f"{counted(len(failed), 'node')} refused to forget {label(peer)}: {'; '.join(failed)}; "
            f"{len(deleted.forgotten_by)} did; the node was not stopped"
        )

    progress(f"stopping {label(peer)}")
    try:
        with NodeHandle.open(address, timeout) as handle:
            handle.call("Shutdown", admin_pb2.ShutdownRequest(reset=True))
    except OperationError as exc:
        deleted.stop_error = str(exc)
        return deleted
    deleted.stopped = _wait_stopped(address, timeout, wait_s, progress)
    if not deleted.stopped:
        deleted.stop_error = f"it still answers {wait_s:g}s after it was asked to stop"
    return deleted


def _refuse_if_busy(
    peer: admin_pb2.PeerState, state: admin_pb2.ClusterStateReply, timeout: float
) -> None:
    """Refuse (changing nothing) a node that owns slots or takes part in a migration."""
    ranges = ranges_of(peer.node)
    if ranges:
        owned = sum(b - a + 1 for a, b in ranges)
        raise OperationError(
            f"{label(peer)} still owns {counted(owned, 'slot')} ({format_ranges(ranges)}); "
            f"move them away first (clusterctl reshard ... --from {short_id(peer.node.id)}, or "
            f"clusterctl rebalance ... --weight {short_id(peer.node.id)}=0); nothing was changed"
        )
    try:
        with NodeHandle.open(peer.node.address, timeout) as handle:
            own = handle.state()
            running = [m for m in migration_status(handle) if m.state in ACTIVE_STATES]
    except OperationError:
        return  # down: nothing it could still be doing matters
    mine = [
        s
        for p in own.peers
        if p.node.id == own.myself
        for a, b in ranges_of(p.node)
        for s in range(a, b + 1)
    ]
    if mine:
        raise OperationError(
            f"{label(peer)} owns no slots in the view of {state.myself[:8]}, but still claims "
            f"{len(mine)} ({format_ranges(to_ranges(mine))}) in its own; wait for the views to "
            "agree (clusterctl check); nothing was changed"
        )
    if running:
        ids = ", ".join(m.migration_id for m in running)
        raise OperationError(
            f"{label(peer)} is taking part in migrations ({ids}); let them finish or run "
            "clusterctl fix; nothing was changed"
        )


def _reassign(
    state: admin_pb2.ClusterStateReply,
    node_id: str,
    replicas: list[admin_pb2.PeerState],
    timeout: float,
    progress: Progress,
) -> list[tuple[str, str, str]]:
    """Make each replica of ``node_id`` follow the slot-owning primary with the fewest replicas."""
    primaries = [
        p
        for p in state.peers
        if is_primary(p)
        and p.node.id != node_id
        and p.node.slots
        and not {"fail", "pfail"} & set(p.flags)
    ]
    if not primaries:
        raise OperationError(
            f"{len(replicas)} replicas follow the node and no other primary can take them; "
            "nothing was changed"
        )
    followers = {p.node.id: len(replicas_of(state, p.node.id)) for p in primaries}
    moved: list[tuple[str, str, str]] = []
    for replica in replicas:
        chosen = min(primaries, key=lambda p: (followers[p.node.id], p.node.address))
        progress(f"moving replica {label(replica)} to {label(chosen)}")
        with NodeHandle.open(replica.node.address, timeout) as handle:
            try:
                handle.replicate(chosen.node.id)
            except OperationError as exc:
                raise OperationError(
                    f"could not move the replica {label(replica)} to {label(chosen)}: {exc}; "
                    f"{len(moved)} replicas were moved, the node was neither forgotten nor "
                    "stopped"
                ) from None
        followers[chosen.node.id] += 1
        moved.append((replica.node.address, replica.node.id, chosen.node.id))
    return moved


def _wait_stopped(address: str, timeout: float, wait_s: float, progress: Progress) -> bool:
    """Poll until the node stops answering."""

    def pending() -> str | None:
        try:
            with NodeHandle.open(address, min(timeout, 1.0)) as handle:
                handle.state()
        except OperationError:
            return None
        return f"{address} is draining"

    return poll_until(pending, wait_s, progress) is None
