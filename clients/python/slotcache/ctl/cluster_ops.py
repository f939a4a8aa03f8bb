"""Cluster operations shared by clusterctl's commands and by tests: create, inspect, wait.

Each operation validates everything it can before it changes anything, so a
bad request (a node that is down, or already in another cluster) fails with
a clear message and leaves the nodes as they were.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from slotcache.errors import from_rpc_error
from slotcache.v1 import admin_pb2, admin_pb2_grpc, cache_pb2

SLOT_COUNT = 16384


class OperationError(Exception):
    """A cluster operation was refused or failed; the message says why and what state is left."""


def split_slots(n: int) -> list[tuple[int, int]]:
    """Split the 16384 slots into ``n`` contiguous, near-equal inclusive ranges."""
    if n < 1:
        raise ValueError("need at least one primary")
    base, extra = divmod(SLOT_COUNT, n)
    ranges, start = [], 0
    for i in range(n):
        size = base + (1 if i < extra else 0)
        ranges.append((start, start + size - 1))
        start += size
    return ranges


@dataclass
class NodeHandle:
    """A connection to one node's Admin service."""

    address: str
    channel: grpc.Channel
    admin: admin_pb2_grpc.AdminStub
    timeout: float

    @classmethod
    def open(cls, address: str, timeout: float) -> NodeHandle:
        """Connect (lazily, as gRPC does) to ``address``."""
        channel = grpc.insecure_channel(address)
        return cls(address, channel, admin_pb2_grpc.AdminStub(channel), timeout)

    def call(self, method: str, request: object) -> object:
        """One Admin RPC; failures become OperationError naming the node."""
        try:
            return getattr(self.admin, method)(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            err = from_rpc_error(exc)
            if err.code in _UNREACHABLE:
                # gRPC's own text is accurate but does not say what the operator should check.
                raise OperationError(
                    f"{self.address}: cannot reach the node ({err.code.name}: {err.message}); "
                    "is it running, and is the address right?"
                ) from None
            raise OperationError(f"{self.address}: {err.code.name}: {err.message}") from None

    def state(self) -> admin_pb2.ClusterStateReply:
        """This node's view of the cluster."""
        reply = self.call("ClusterState", admin_pb2.ClusterStateRequest())
        assert isinstance(reply, admin_pb2.ClusterStateReply)
        return reply

    def info(self) -> admin_pb2.InfoReply:
        """Identity and counters."""
        reply = self.call("Info", admin_pb2.InfoRequest())
        assert isinstance(reply, admin_pb2.InfoReply)
        return reply

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def __enter__(self) -> NodeHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def fetch_state(address: str, timeout: float) -> admin_pb2.ClusterStateReply:
    """One node's view of the cluster, over a channel opened for this call."""
    with NodeHandle.open(address, timeout) as node:
        return node.state()


def fetch_states(
    addresses: Sequence[str], timeout: float
) -> dict[str, admin_pb2.ClusterStateReply | OperationError]:
    """Every node's view, asked in parallel so one hung node costs one timeout, not one each.

    A node that cannot be asked maps to the error saying why, so the caller
    can report it next to the others instead of stopping at the first.
    """

    def ask(address: str) -> admin_pb2.ClusterStateReply | OperationError:
        try:
            return fetch_state(address, timeout)
        except OperationError as exc:
            return exc

    if not addresses:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(addresses))) as pool:
        return dict(zip(addresses, pool.map(ask, addresses), strict=True))


def myself(state: admin_pb2.ClusterStateReply) -> admin_pb2.PeerState:
    """The entry a node's state reply has for the node itself."""
    for peer in state.peers:
        if peer.node.id == state.myself:
            return peer
    raise OperationError("the node's state does not describe the node itself")


def check_bus(bus_address: str, timeout: float) -> None:
    """Make sure a node's bus port answers, before anything is changed."""
    with grpc.insecure_channel(bus_address) as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        except grpc.RpcError as exc:
            raise OperationError(
                f"the cluster bus at {bus_address} does not answer ({exc.code().name}); "
                "is a firewall in the way, or is --announce-host wrong?"
            ) from None


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
            f"{count} nodes cannot form primaries with {replicas} replicas each; "
            f"give a multiple of {replicas + 1} nodes"
        )
    return primaries, [i % primaries for i in range(count - primaries)]


def create_cluster(
    addresses: Sequence[str],
    *,
    replicas: int = 0,
    timeout: float = 5.0,
    wait_s: float = 30.0,
) -> list[tuple[str, str, tuple[int, int]]]:
    """Form a cluster of empty nodes: split the slots evenly and have every node meet.

    With ``replicas``, the first ``len / (replicas + 1)`` nodes are primaries
    and the others replicate them round-robin. Returns ``(address, node id,
    slot range)`` per node, in the given order; replicas have the range
    ``(-1, -1)``.
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
            _check_fresh(node, state)
        me = [myself(s) for s in states]
        for peer in me:
            check_bus(peer.bus_address, timeout)
        plan = split_slots(primary_count)
        for i, (node, (start, end)) in enumerate(zip(nodes, plan, strict=False)):
            node.call("SetConfigEpoch", admin_pb2.SetConfigEpochRequest(config_epoch=i + 1))
            node.call(
                "AddSlots",
                admin_pb2.AddSlotsRequest(ranges=[cache_pb2.SlotRange(start=start, end=end)]),
            )
        for peer in me[1:]:
            host, _, port = peer.bus_address.rpartition(":")
            nodes[0].call("Meet", admin_pb2.MeetRequest(host=host, bus_port=int(port)))
        for replica, primary in zip(nodes[primary_count:], followed, strict=True):
            # The replica must know its primary before it can follow it.
            host, _, port = me[primary].bus_address.rpartition(":")
            replica.call("Meet", admin_pb2.MeetRequest(host=host, bus_port=int(port)))
            replica.call("Replicate", admin_pb2.ReplicateRequest(primary_id=states[primary].myself))
        wait_until_agreed(nodes, len(nodes), wait_s)
        if replicas:
            wait_until_replicated(nodes[:primary_count], replicas, wait_s)
        ranges = [*plan, *[(-1, -1)] * len(followed)]
        return [(n.address, s.myself, r) for n, s, r in zip(nodes, states, ranges, strict=True)]
    finally:
        for node in nodes:
            node.close()


def _check_fresh(node: NodeHandle, state: admin_pb2.ClusterStateReply) -> None:
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
            f"{node.address} already owns {state.slots_assigned} slots; nothing was changed"
        )
    keys = node.info().stats.get("keys", 0)
    if keys:
        raise OperationError(f"{node.address} holds {keys} keys; nothing was changed")


def wait_until_replicated(primaries: Sequence[NodeHandle], replicas: int, wait_s: float) -> None:
    """Poll until every primary has ``replicas`` replicas past their first sync."""
    deadline = time.monotonic() + wait_s
    counts: list[int] = []
    while time.monotonic() < deadline:
        counts = [p.info().stats.get("repl.replicas_in_sync", 0) for p in primaries]
        if all(c >= replicas for c in counts):
            return
        time.sleep(0.05)
    raise OperationError(
        f"replicas did not finish syncing within {wait_s:.0f}s (in sync per primary: {counts})"
    )


def views_agree(states: Sequence[admin_pb2.ClusterStateReply], expected_nodes: int) -> bool:
    """Every node is ok, knows the same nodes, and maps every slot the same way."""
    if not states or any(not s.cluster_ok or s.known_nodes != expected_nodes for s in states):
        return False
    return len({slot_map(s) for s in states}) == 1


def slot_map(state: admin_pb2.ClusterStateReply) -> tuple[tuple[str, int, int], ...]:
    """A node's slot ownership as sorted ``(node id, start, end)`` triples."""
    return tuple(sorted((p.node.id, r.start, r.end) for p in state.peers for r in p.node.slots))


def wait_until_agreed(nodes: Sequence[NodeHandle], expected_nodes: int, wait_s: float) -> None:
    """Poll until every node agrees on the view, or raise with what still differs."""
    deadline = time.monotonic() + wait_s
    states: list[admin_pb2.ClusterStateReply] = []
    while time.monotonic() < deadline:
        states = [n.state() for n in nodes]
        if views_agree(states, expected_nodes):
            return
        time.sleep(0.05)
    summary = ", ".join(
        f"{n.address}: ok={s.cluster_ok} nodes={s.known_nodes}"
        for n, s in zip(nodes, states, strict=False)
    )
    raise OperationError(f"the nodes did not agree within {wait_s:.0f}s ({summary})")
