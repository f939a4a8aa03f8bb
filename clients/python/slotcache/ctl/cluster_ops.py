"""Cluster operations shared by clusterctl's commands and by tests: create and wait to agree.

Each operation validates everything it can before it changes anything, so a
bad request (a node that is down, or already in another cluster) fails with
a clear message and leaves the nodes as they were.

The building blocks (:class:`NodeHandle`, :class:`OperationError`, the
fetch and wait helpers) live in :mod:`slotcache.ctl.rpc`; they are
re-exported here because tests, benchmarks and scripts import them from
this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from slotcache.contract import split_slots
from slotcache.ctl.agreement import lagging, role_map, slot_map, waiting_text
from slotcache.ctl.roles import is_proxy
from slotcache.ctl.rpc import (
    NodeHandle,
    OperationError,
    Progress,
    ask_all,
    check_bus,
    fetch_infos,
    fetch_state,
    fetch_states,
    ignore_progress,
    myself,
    poll_until,
    wait_for,
)
from slotcache.ctl.wording import counted
from slotcache.v1 import admin_pb2, cache_pb2

__all__ = [
    "CreatedNode",
    "NodeHandle",
    "OperationError",
    "Progress",
    "ask_all",
    "check_bus",
    "check_fresh",
    "create_cluster",
    "fetch_infos",
    "fetch_state",
    "fetch_states",
    "ignore_progress",
    "myself",
    "plan_roles",
    "poll_until",
    "role_map",
    "slot_map",
    "views_agree",
    "wait_for",
    "wait_until_agreed",
    "wait_until_replicated",
]


def check_fresh(node: NodeHandle, state: admin_pb2.ClusterStateReply) -> None:
    """Refuse a node that is not an empty, lone, cluster-mode node: joining would lose its data."""
    if not state.cluster_enabled:
        raise OperationError(
            f"{node.address} is not in cluster mode; start it with --cluster-enabled yes"
        )
    if state.known_nodes > 1:
        raise OperationError(
            f"{node.address} already belongs to a cluster (it knows {state.known_nodes - 1} "
            "other nodes); nothing was changed"
        )
    if state.slots_assigned:
        raise OperationError(
            f"{node.address} already owns {counted(state.slots_assigned, 'slot')}; "
            "nothing was changed"
        )
    keys = node.info().stats.get("keys", 0)
    if keys:
        raise OperationError(f"{node.address} holds {counted(keys, 'key')}; nothing was changed")


def plan_roles(count: int, replicas: int) -> tuple[int, list[int]]:
    """How many of ``count`` nodes are primaries, and which primary each replica follows.

    As ``redis-cli --cluster create``: the first ``count / (replicas + 1)``
    nodes are primaries; the rest are spread over them round-robin.
    """
    if replicas < 0:
        raise OperationError("--replicas must be >= 0")
    primaries = count // (replicas + 1)
    if primaries < 1 or count != primaries * (replicas + 1):
        raise OperationError(
            f"{count} nodes cannot be split into primaries with {counted(replicas, 'replica')} "
            f"each; give a multiple of {replicas + 1} nodes"
        )
    return primaries, [i % primaries for i in range(count - primaries)]


@dataclass(frozen=True)
class CreatedNode:
    """One node of a new cluster: a primary with its slot range, or a replica of a primary."""

    address: str
    id: str
    slots: tuple[int, int] | None
    primary_id: str | None

    @property
    def role(self) -> str:
        """``primary`` or ``replica``."""
        return "replica" if self.primary_id else "primary"


def create_cluster(
    addresses: Sequence[str],
    *,
    replicas: int = 0,
    timeout: float = 5.0,
    wait_s: float = 30.0,
    progress: Progress = ignore_progress,
) -> list[CreatedNode]:
    """Form a cluster of empty nodes: split the slots evenly and have every node meet.

    With ``replicas``, the first ``len / (replicas + 1)`` nodes are primaries
    and the others replicate them round-robin. Returns the nodes in the
    given order.
    """
    if len(set(addresses)) != len(addresses):
        raise OperationError("the same address is listed twice")
    if not addresses:
        raise OperationError("no nodes given")
    primary_count, followed = plan_roles(len(addresses), replicas)
    nodes = [NodeHandle.open(a, timeout) for a in addresses]
    try:
        states = [n.state() for n in nodes]
        for node, state in zip(nodes, states, strict=True):
            check_fresh(node, state)
        me = [myself(s) for s in states]
        proxies = [n.address for n, peer in zip(nodes, me, strict=True) if is_proxy(peer)]
        if proxies:
            raise OperationError(
                f"{', '.join(proxies)} {'is a proxy' if len(proxies) == 1 else 'are proxies'} "
                "(--proxy yes): a proxy never owns slots or replicates; create the cluster from "
                "the other nodes, then add proxies with clusterctl add-node; nothing was changed"
            )
        for peer in me:
            check_bus(peer.bus_address, timeout)
        plan = split_slots(primary_count)
        progress("assigning slots and introducing the nodes to each other")
        for i, (node, (start, end)) in enumerate(zip(nodes, plan, strict=False)):
            node.call("SetConfigEpoch", admin_pb2.SetConfigEpochRequest(config_epoch=i + 1))
            node.call(
                "AddSlots",
                admin_pb2.AddSlotsRequest(ranges=[cache_pb2.SlotRange(start=start, end=end)]),
            )
        for peer in me[1:]:
            nodes[0].meet(peer.bus_address)
        for replica, primary in zip(nodes[primary_count:], followed, strict=True):
            # The replica must know its primary before it can follow it.
            replica.meet(me[primary].bus_address)
            replica.replicate(states[primary].myself)
        wait_until_agreed(nodes, len(nodes), wait_s, progress)
        if replicas:
            wait_until_replicated(nodes[:primary_count], replicas, wait_s, progress)
        primary_ids = [states[p].myself for p in followed]
        return [
            CreatedNode(n.address, s.myself, slots, primary)
            for n, s, slots, primary in zip(
                nodes,
                states,
                [*plan, *[None] * len(followed)],
                [*[None] * primary_count, *primary_ids],
                strict=True,
            )
        ]
    finally:
        for node in nodes:
            node.close()


def wait_until_replicated(
    primaries: Sequence[NodeHandle],
    replicas: int,
    wait_s: float,
    progress: Progress = ignore_progress,
) -> None:
    """Poll until every primary has ``replicas`` replicas past their first sync."""

    def pending() -> str | None:
        counts = [p.info().stats.get("repl.replicas_in_sync", 0) for p in primaries]
        in_sync = sum(min(c, replicas) for c in counts)
        total = replicas * len(primaries)
        if in_sync == total:
            return None
        return f"{in_sync} of {total} replicas have a full copy of their primary's data"

    wait_for(pending, wait_s, "replicas did not finish syncing", progress)


def views_agree(states: Sequence[admin_pb2.ClusterStateReply], expected_nodes: int) -> bool:
    """Every node is ok, knows the same nodes, and agrees on every slot's owner and every role."""
    return bool(states) and not lagging(states, expected_nodes)


def wait_until_agreed(
    nodes: Sequence[NodeHandle],
    expected_nodes: int,
    wait_s: float,
    progress: Progress = ignore_progress,
) -> None:
    """Poll until every node agrees on the view, or raise with what still differs."""

    def pending() -> str | None:
        behind = lagging([n.state() for n in nodes], expected_nodes)
        if not behind:
            return None
        return waiting_text("agree on the cluster", [n.address for n in nodes], behind, len(nodes))

    wait_for(pending, wait_s, "the nodes did not agree", progress)
