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

from .membership.step import Envelope
from .wire import bus_pb2, bus_pb2_grpc

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


class BusService(bus_pb2_grpc.BusServicer):
    """Answers bus exchanges by running them through the membership runtime."""

    def __init__(self, handle: Handle, traffic: BusTraffic) -> None:
        self._handle = handle
        self._traffic = traffic

    async def Exchange(
        self, request: bus_pb2.BusMessage, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bus_pb2.BusMessage:
        """Process one message and return its reply (an empty message when none is due)."""
        self._traffic.received(request)
        reply = self._handle(request)
        return reply if reply is not None else bus_pb2.BusMessage()


class BusTransport:
    """Delivers envelopes over pooled gRPC channels to peers' bus ports.

    Sends are fire-and-forget tasks: the state machine never waits on the
    network. A reply (a PONG) is fed back through ``on_reply``; failures are
    left to the state machine's own timeouts, as lost messages would be.
    """

    def __init__(self, on_reply: Callable[[bus_pb2.BusMessage], None], timeout_s: float) -> None:
        self._on_reply = on_reply
        self._timeout_s = timeout_s
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, bus_pb2_grpc.BusAsyncStub] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.traffic = BusTraffic()

    def stub(self, target: str) -> bus_pb2_grpc.BusAsyncStub:
        """A stub for ``host:bus_port``, reusing its channel."""
        stub = self._stubs.get(target)
        if stub is None:
            channel = grpc.aio.insecure_channel(target, options=PEER_CHANNEL_OPTIONS)
            self._channels[target] = channel
            stub = self._stubs[target] = bus_pb2_grpc.BusStub(channel)
        return stub

    def send_all(self, envelopes: Sequence[Envelope]) -> None:
        """Start delivering each envelope."""
        for envelope in envelopes:
            task = asyncio.create_task(self._deliver(envelope))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, envelope: Envelope) -> None:
        traffic = self.traffic
        traffic.sent_messages += 1
        traffic.sent_bytes += envelope.message.ByteSize()
        try:
            reply = await self.stub(envelope.dest.bus).Exchange(
                envelope.message, timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            log.debug("bus message to %s failed: %s", envelope.dest.bus, exc.code().name)
            return
        if reply.type:
            traffic.received(reply)
            self._on_reply(reply)

    async def exchange(self, target: str, message: bus_pb2.BusMessage) -> bus_pb2.BusMessage:
        """One exchange whose reply the caller needs (MEET); raises on failure."""
        return await self.stub(target).Exchange(message, timeout=self._timeout_s)

    async def close(self) -> None:
        """Cancel pending sends and close every channel."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in self._channels.values()))
        self._channels.clear()
        self._stubs.clear()
