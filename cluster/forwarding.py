"""Forwarding requests to the node that owns their slot, over pooled channels.

This is what lets a plain generated stub in any language talk to any node:
the receiving node relays the call and its answer, adding one to the hop
count so that disagreeing views cannot loop a request forever.
"""

from __future__ import annotations

from typing import Any

import grpc

from slotcache.contract import HOPS_KEY, TRACEPARENT_KEY
from slotcache.v1 import cache_pb2

from .bus import PEER_CHANNEL_OPTIONS
from .executor import CommandError
from .peer_channels import PeerChannelPool
from .security.member_rpc import method_path
from .security.node_auth import NodeAuth
from .services.status import from_rpc_error

_SERVICE = cache_pb2.DESCRIPTOR.services_by_name["Cache"]
# Long-lived streams usually have no deadline; a forwarded batch still gets one.
DEFAULT_TIMEOUT_S = 10.0


class ForwardError(Exception):
    """The owner (or the way to it) failed the call; carries its status for relaying."""

    def __init__(self, exc: grpc.aio.AioRpcError) -> None:
        super().__init__(exc.details())
        self.error = from_rpc_error(exc)

    def to_command_error(self) -> CommandError:
        """The same failure, reason and details included, as this node's own refusal."""
        return self.error


class Forwarder:
    """One channel per peer client address, created on first use and reused."""

    def __init__(self, max_message_bytes: int, auth: NodeAuth | None = None) -> None:
        # Proves to the owner that this node, a member, relays the call.
        self._auth = auth or NodeAuth()
        self._channels = PeerChannelPool(
            [
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
                # A restarted owner must be reachable again at once, not after a long backoff.
                *PEER_CHANNEL_OPTIONS,
            ]
        )
        self._methods: dict[tuple[str, str], Any] = {}
        # Read by the metrics exporter.
        self.forwarded_calls = 0
        self.forwarded_batches = 0

    def _method(self, address: str, rpc: str) -> Any:
        key = (address, rpc)
        if self._channels.rotated():
            self._methods.clear()
        method = self._methods.get(key)
        if method is None:
            channel = self._channels.get(address)
            desc = _SERVICE.methods_by_name[rpc]
            request_cls = getattr(cache_pb2, desc.input_type.name)
            reply_cls = getattr(cache_pb2, desc.output_type.name)
            path = f"/{_SERVICE.full_name}/{rpc}"
            factory = channel.stream_stream if desc.client_streaming else channel.unary_unary
            method = self._methods[key] = factory(
                path,
                request_serializer=request_cls.SerializeToString,
                response_deserializer=reply_cls.FromString,
            )
        return method

    async def unary(
        self,
        address: str,
        rpc: str,
        request: Any,
        hops: int,
        timeout: float | None,
        trace: str = "",
        credentials: tuple[tuple[str, str], ...] = (),
    ) -> Any:
        """Call ``rpc`` on the node at ``address``; raise ForwardError on failure.

        ``credentials`` carry the caller's identity for the owner to check.
        """
        self.forwarded_calls += 1
        try:
            return await self._method(address, rpc)(
                request,
                timeout=timeout or DEFAULT_TIMEOUT_S,
                metadata=self._metadata(rpc, hops, trace) + credentials,
            )
        except grpc.aio.AioRpcError as exc:
            raise ForwardError(exc) from None

    async def pipeline(
        self,
        address: str,
        batch: cache_pb2.PipelineRequest,
        hops: int,
        timeout: float | None,
        trace: str = "",
        credentials: tuple[tuple[str, str], ...] = (),
    ) -> cache_pb2.PipelineReply:
        """Send one batch over a short Pipeline call and return its reply batch."""
        self.forwarded_batches += 1
        call = self._method(address, "Pipeline")(
            timeout=timeout or DEFAULT_TIMEOUT_S,
            metadata=self._metadata("Pipeline", hops, trace) + credentials,
        )
        try:
            await call.write(batch)
            await call.done_writing()
            reply: cache_pb2.PipelineReply = await call.read()
            return reply
        except grpc.aio.AioRpcError as exc:
            raise ForwardError(exc) from None
        finally:
            call.cancel()

    def _metadata(self, rpc: str, hops: int, trace: str) -> tuple[tuple[str, str], ...]:
        return forward_metadata(hops, trace) + self._auth.call_metadata(
            method_path(_SERVICE.full_name, rpc)
        )

    async def close(self) -> None:
        """Close every channel."""
        await self._channels.close()
        self._methods.clear()


def forward_metadata(hops: int, trace: str) -> tuple[tuple[str, str], ...]:
    """The hop count, and the caller's trace context when it sent one."""
    if trace:
        return ((HOPS_KEY, str(hops)), (TRACEPARENT_KEY, trace))
    return ((HOPS_KEY, str(hops)),)
