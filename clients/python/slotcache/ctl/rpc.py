"""Talking to nodes: one Admin connection, asking many nodes at once, and polling.

The building blocks of every clusterctl operation. RPC failures become
:class:`OperationError` messages that name the node and say what to check,
and long waits report what they still wait for through a ``progress``
callback, so commands can show it while scripts and tests pass nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from slotcache.ctl import auth
from slotcache.ctl.transport import open_channel
from slotcache.errors import connect_hint, from_rpc_error
from slotcache.v1 import admin_pb2, admin_pb2_grpc

POLL_S = 0.05

T = TypeVar("T")
Progress = Callable[[str], None]
"""Told, again and again while an operation waits, what it is still waiting for."""


def ignore_progress(text: str) -> None:
    """The progress callback for callers that show none."""


class OperationError(Exception):
    """A cluster operation was refused or failed; the message says why and what state is left."""


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
        channel = open_channel(address)
        return cls(address, channel, admin_pb2_grpc.AdminStub(channel), timeout)

    def call(self, method: str, request: object) -> object:
        """One Admin RPC; failures become OperationError naming the node."""
        try:
            return getattr(self.admin, method)(
                request, timeout=self.timeout, metadata=auth.metadata()
            )
        except grpc.RpcError as exc:
            err = from_rpc_error(exc)
            if err.code in _UNREACHABLE:
                # gRPC's own text is accurate but does not say what the operator should check.
                raise OperationError(
                    f"{self.address}: cannot reach the node ({err.code.name}: {err.message}); "
                    f"{connect_hint(err.message)}"
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

    def meet(self, bus_address: str) -> None:
        """Introduce the node at ``bus_address`` (``host:port`` of its bus) to this node."""
        host, _, port = bus_address.rpartition(":")
        self.call("Meet", admin_pb2.MeetRequest(host=host, bus_port=int(port)))

    def replicate(self, primary_id: str) -> None:
        """Make this node a replica of the primary ``primary_id``, which it must know."""
        self.call("Replicate", admin_pb2.ReplicateRequest(primary_id=primary_id))

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


def ask_all(
    addresses: Sequence[str], timeout: float, ask: Callable[[NodeHandle], T]
) -> dict[str, T | OperationError]:
    """``ask`` every node in parallel, so one hung node costs one timeout, not one each.

    A node that cannot be asked maps to the error saying why, so the caller
    can report it next to the others instead of stopping at the first.
    """

    def one(address: str) -> T | OperationError:
        try:
            with NodeHandle.open(address, timeout) as node:
                return ask(node)
        except OperationError as exc:
            return exc

    if not addresses:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(addresses))) as pool:
        return dict(zip(addresses, pool.map(one, addresses), strict=True))


def fetch_states(
    addresses: Sequence[str], timeout: float
) -> dict[str, admin_pb2.ClusterStateReply | OperationError]:
    """Every node's view (see :func:`ask_all`)."""
    return ask_all(addresses, timeout, NodeHandle.state)


def fetch_infos(
    addresses: Sequence[str], timeout: float
) -> dict[str, admin_pb2.InfoReply | OperationError]:
    """Every node's identity and counters (see :func:`ask_all`)."""
    return ask_all(addresses, timeout, NodeHandle.info)


def myself(state: admin_pb2.ClusterStateReply) -> admin_pb2.PeerState:
    """The entry a node's state reply has for the node itself."""
    for peer in state.peers:
        if peer.node.id == state.myself:
            return peer
    raise OperationError("the node's state does not describe the node itself")


def check_bus(bus_address: str, timeout: float) -> None:
    """Make sure a node's bus port answers, before anything is changed."""
    with open_channel(bus_address) as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        except grpc.RpcError as exc:
            raise OperationError(
                f"the cluster bus at {bus_address} does not answer ({exc.code().name}); "
                "is a firewall in the way, or is --announce-host wrong?"
            ) from None


def poll_until(
    pending: Callable[[], str | None], wait_s: float, progress: Progress = ignore_progress
) -> str | None:
    """Poll ``pending`` until it returns None or ``wait_s`` passes; return its last answer.

    Until it is done, ``pending`` says what is still awaited; each answer
    goes to ``progress``.
    """
    deadline = time.monotonic() + wait_s
    while True:
        awaited = pending()
        if awaited is None:
            return None
        progress(awaited)
        if time.monotonic() >= deadline:
            return awaited
        time.sleep(POLL_S)


def wait_for(
    pending: Callable[[], str | None],
    wait_s: float,
    failure: str,
    progress: Progress = ignore_progress,
) -> None:
    """:func:`poll_until`, raising ``failure within N s (what was still awaited)`` at the end."""
    awaited = poll_until(pending, wait_s, progress)
    if awaited is not None:
        raise OperationError(f"{failure} within {wait_s:g}s ({awaited})")
