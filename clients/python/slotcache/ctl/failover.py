"""Manual failover: promote a replica to primary of its primary's slots.

The replica runs the protocol (Redis's CLUSTER FAILOVER); clusterctl checks
that the address really is a replica, asks it to fail over, and reports
what happened: whether it was promoted within the wait, and what its old
primary became. The old primary turns into a replica of the new one when it
learns of the promotion, which can lag the promotion by a gossip round; a
stopped or partitioned old primary cannot be asked at all.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

from slotcache.ctl.replicas import find_node, label, replicas_of
from slotcache.ctl.roles import is_proxy, is_replica
from slotcache.ctl.rpc import (
    NodeHandle,
    OperationError,
    Progress,
    fetch_state,
    ignore_progress,
    myself,
    poll_until,
)
from slotcache.ctl.views import role_name, short_id
from slotcache.v1 import admin_pb2

# The Failover RPC waits server-side; the call's own deadline needs a little more.
RPC_MARGIN_S = 5.0
# After a promotion, how long to keep asking the old primary about its new role, at least.
DEMOTION_WAIT_MIN_S = 3.0


class Mode(enum.Enum):
    """How the replica goes about it; the values are what ``--json`` prints."""

    GRACEFUL = "graceful"  # the primary pauses writes until the replica has them all
    FORCE = "force"  # do not wait for the primary (it may be down); still needs votes
    TAKEOVER = "takeover"  # take the slots without votes, under a new epoch

    @property
    def wire(self) -> admin_pb2.FailoverMode.ValueType:
        """The protobuf enum value."""
        return {
            Mode.GRACEFUL: admin_pb2.FAILOVER_MODE_GRACEFUL,
            Mode.FORCE: admin_pb2.FAILOVER_MODE_FORCE,
            Mode.TAKEOVER: admin_pb2.FAILOVER_MODE_TAKEOVER,
        }[self]


@dataclass(frozen=True)
class OldPrimary:
    """The former primary after the failover, as it reports itself (or as it could not)."""

    id: str
    address: str
    # "replica", "primary", or None when it could not be asked.
    role: str | None
    primary_id: str | None
    error: str | None


@dataclass(frozen=True)
class FailoverOutcome:
    """What :func:`failover` did."""

    address: str
    id: str
    mode: Mode
    promoted: bool
    seconds: float
    old_primary: OldPrimary


def failover(
    address: str,
    mode: Mode = Mode.GRACEFUL,
    *,
    timeout: float = 10.0,
    progress: Progress = ignore_progress,
) -> FailoverOutcome:
    """Ask the replica at ``address`` to fail over and wait up to ``timeout`` for the promotion.

    Raises OperationError, changing nothing, when the node is not in cluster
    mode or is not a replica. A promotion that does not happen in time is an
    outcome (``promoted`` False), not an error: the caller decides.
    """
    state = fetch_state(address, timeout)
    if not state.cluster_enabled:
        raise OperationError(f"{address} is not in cluster mode; it has nothing to fail over")
    me = myself(state)
    if not is_replica(me):
        raise OperationError(_not_a_replica(address, state))
    old = find_node(state, me.node.primary_id)
    old_label = label(old) if old is not None else short_id(me.node.primary_id)

    progress(f"{mode.value} failover: {address} takes over from {old_label}")
    started = time.monotonic()
    with NodeHandle.open(address, timeout + RPC_MARGIN_S) as node:
        reply = node.call(
            "Failover", admin_pb2.FailoverRequest(mode=mode.wire, wait_ms=int(timeout * 1000))
        )
    assert isinstance(reply, admin_pb2.FailoverReply)
    seconds = time.monotonic() - started
    old_address = old.node.address if old is not None else ""
    demoted = _old_primary_role(
        me.node.primary_id,
        old_address,
        state.myself if reply.promoted else None,
        max(DEMOTION_WAIT_MIN_S, timeout - seconds),
        progress,
    )
    return FailoverOutcome(address, state.myself, mode, reply.promoted, seconds, demoted)


def _not_a_replica(address: str, state: admin_pb2.ClusterStateReply) -> str:
    """Why a primary (or a proxy) cannot fail over, and where to run the command instead."""
    if is_proxy(myself(state)):
        return (
            f"{address} is a proxy: it replicates nothing, so it cannot fail over; "
            "nothing was changed"
        )
    followers = replicas_of(state, state.myself)
    if followers:
        where = "run it on one of its replicas: " + ", ".join(p.node.address for p in followers)
    else:
        where = "it has no replicas; add one with clusterctl add-node NEW " + address
    return f"{address} is a primary; only a replica can fail over, so nothing was changed ({where})"


def _old_primary_role(
    old_id: str, address: str, new_primary: str | None, wait_s: float, progress: Progress
) -> OldPrimary:
    """Ask the old primary for its role; after a promotion, wait until it follows the new one."""
    if not address:
        return OldPrimary(old_id, address, None, None, "its address is unknown")
    seen: list[OldPrimary] = []

    def pending() -> str | None:
        try:
            state = fetch_state(address, min(wait_s, 2.0))
        except OperationError as exc:
            seen.append(OldPrimary(old_id, address, None, None, str(exc)))
            return None  # a primary that is down is the usual reason for --force
        peer = myself(state).node
        seen.append(OldPrimary(old_id, address, role_name(peer), peer.primary_id or None, None))
        if new_primary is None or peer.primary_id == new_primary:
            return None
        return f"{address} (the old primary) to learn that it is a replica now"

    # Not stepping down in time is reported through the role it still has: "primary".
    poll_until(pending, wait_s, progress)
    return seen[-1]
