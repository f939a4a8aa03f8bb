"""The cluster bus on the wire: the Bus servicer and the transport that sends envelopes.

Both are thin: the servicer hands each message to the membership runtime
and returns its reply; the transport delivers what the runtime sends and
hands replies back to it. Neither applies a step itself: the runtime does,
in one place (see :mod:`membership_runtime`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from .membership.step import Envelope
from .peer_channels import PeerChannelPool
from .security.member_rpc import (
    NotAMember,
    admit_member,
    answer_as_member,
    check_answer,
    method_path,
)
from .security.node_auth import NodeAuth
from .wire import bus_pb2

BUS_SERVICE = bus_pb2.DESCRIPTOR.services_by_name["Bus"].full_name
EXCHANGE = method_path(BUS_SERVICE, "Exchange")

log = logging.getLogger(__name__)

# gRPC backs off reconnecting to an unreachable peer up to 120 s by default, so a
# node that was down for minutes would stay unreachable (and FAIL) for up to two
# more minutes after it came back. Peers are retried every cron instead, as in
# Redis, with the backoff capped well below node_timeout.
PEER_CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Peers announced by DNS name (a StatefulSet pod's) come back with new IPs;
    # gRPC re-resolves a failing name at most this often (its default is 30 s).
    ("grpc.dns_min_time_between_resolutions_ms", 1000),
]

# Processes a message from a peer and returns the reply its exchange answers with.
Handle = Callable[[bus_pb2.BusMessage], bus_pb2.BusMessage | None]


@dataclass(slots=True)
class BusTraffic:
    """Bus messages and their bytes, each way: plain counters the metrics read when scraped."""

    sent_messages: int = 0
    sent_bytes: int = 0
    received_messages: int = 0
    received_bytes: int = 0

    def received(self, message: bus_pb2.BusMessage) -> None:
        """Count a message from a peer: a request it sent, or its reply to ours."""
        self.received_messages += 1
        self.received_bytes += message.ByteSize()


class BusService:
    """Answers bus exchanges from members by running them through the membership runtime.

    Registered with raw bytes in and out (see :meth:`handler`): a token
    covers exactly the bytes that were sent, with no second serialization,
    and a non-member's message is refused before it is even parsed.
    """

    def __init__(self, handle: Handle, traffic: BusTraffic, auth: NodeAuth) -> None:
        self._handle = handle
        self._traffic = traffic
        self._auth = auth

    def handler(self) -> grpc.GenericRpcHandler:
        """The Bus service's handler, to add to a server."""
        return grpc.method_handlers_generic_handler(
            BUS_SERVICE, {"Exchange": grpc.unary_unary_rpc_method_handler(self.exchange)}
        )

    async def exchange(self, body: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        """Process one member's message and return its reply (empty when none is due)."""
        await admit_member(self._auth, context, EXCHANGE, body)
        try:
            request = bus_pb2.BusMessage.FromString(body)
        except DecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not a bus message")
        self._traffic.received(request)
        reply = self._handle(request)
        answer = reply.SerializeToString() if reply is not None else b""
        await answer_as_member(self._auth, context, EXCHANGE, answer, unary=True)
        return answer


class BusTransport:
    """Delivers envelopes over pooled gRPC channels to peers' bus ports.

    Sends are fire-and-forget tasks: the state machine never waits on the
    network. A reply (a PONG) is fed back through ``on_reply``; failures are
    left to the state machine's own timeouts, as lost messages would be.
    Every message carries this node's proof of membership, and a reply is
    believed only with the callee's.
    """

    def __init__(
        self, on_reply: Callable[[bus_pb2.BusMessage], None], timeout_s: float, auth: NodeAuth
    ) -> None:
        self._on_reply = on_reply
        self._timeout_s = timeout_s
        self._auth = auth
        self._channels = PeerChannelPool(PEER_CHANNEL_OPTIONS)
        self._methods: dict[str, grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.traffic = BusTraffic()

    def _exchange(self, target: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
        """Exchange on ``host:bus_port`` (raw bytes both ways), reusing its channel."""
        if self._channels.rotated():
            self._methods.clear()
        method = self._methods.get(target)
        if method is None:
            method = self._methods[target] = self._channels.get(target).unary_unary(EXCHANGE)
        return method

    def send_all(self, envelopes: Sequence[Envelope]) -> None:
        """Start delivering each envelope."""
        for envelope in envelopes:
            task = asyncio.create_task(self._deliver(envelope))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, envelope: Envelope) -> None:
        target = envelope.dest.bus
        try:
            reply = await self._call(target, envelope.message, envelope.node)
        except grpc.aio.AioRpcError as exc:
            log.debug("bus message to %s failed: %s", target, exc.code().name)
            return
        except (NotAMember, DecodeError) as exc:
            # A refused answer is already counted and logged by the authenticator.
            log.debug("bus reply from %s dropped: %s", target, exc)
            return
        if reply.type:
            self._on_reply(reply)

    async def _call(
        self, target: str, message: bus_pb2.BusMessage, audience: bytes = b""
    ) -> bus_pb2.BusMessage:
        body = message.SerializeToString()
        sent = self._auth.call_metadata(EXCHANGE, body, audience)
        traffic = self.traffic
        traffic.sent_messages += 1
        traffic.sent_bytes += len(body)
        call = self._exchange(target)(body, metadata=sent, timeout=self._timeout_s)
        answer = await call
        await check_answer(self._auth, call, sent, EXCHANGE, target, answer, unary=True)
        reply = bus_pb2.BusMessage.FromString(answer)
        if reply.type:
            traffic.received(reply)
        return reply

    async def exchange(
        self, target: str, message: bus_pb2.BusMessage, audience: bytes = b""
    ) -> bus_pb2.BusMessage:
        """One exchange the caller awaits (MEET to a node not known yet, a proxy's LEAVE).

        ``audience`` is the id of the node called, when known. Raises
        AioRpcError when the call fails and NotAMember when the answer does
        not come from a member.
        """
        return await self._call(target, message, audience)

    async def close(self) -> None:
        """Cancel pending sends and close every channel."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._channels.close()
        self._methods.clear()
