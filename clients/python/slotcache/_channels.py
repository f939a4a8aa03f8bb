"""One gRPC channel per node, created on first use and reused by every later call.

Both clients use this pool; they differ only in the channel factory they
pass (made by :func:`connector` from blocking ``grpc`` or ``grpc.aio``
channels, plaintext or TLS) and in how they close what it holds. A gRPC
channel multiplexes any number of concurrent calls over one HTTP/2
connection, so one per node is enough: the node's Pipeline stream and any
unary calls share it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from slotcache._tls import TlsOptions
from slotcache.v1 import cache_pb2

C = TypeVar("C")

_SERVICE = cache_pb2.DESCRIPTOR.services_by_name["Cache"]

# gRPC's 4 MiB default would refuse values the server accepts (16 MiB by
# default); the server enforces the real limits with clearer errors. A node
# that restarts should be reachable again within a second or two, not after
# gRPC's default reconnect backoff, which grows towards two minutes.
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    # Nodes announced by DNS name (Kubernetes pods) come back with new IPs; gRPC
    # re-resolves a failing name at most this often (its default is 30 s).
    ("grpc.dns_min_time_between_resolutions_ms", 1000),
    # Connections of its own: gRPC otherwise shares one connection per address
    # among all channels of the process, so a new client would inherit another
    # one's reconnect backoff to a node that just restarted, and its first call
    # would fail at once instead of connecting.
    ("grpc.use_local_subchannel_pool", 1),
]


def connector(
    insecure: Callable[..., C],
    secure: Callable[..., C],
    tls: TlsOptions | None,
    options: Sequence[tuple[str, Any]] = CHANNEL_OPTIONS,
) -> Callable[[str], C]:
    """How to open a channel to an address: ``insecure`` or, with ``tls``, ``secure``.

    The TLS files are read here, once, so a missing file fails when the
    client is created rather than at its first call.
    """
    if tls is None:
        plain = list(options)
        return lambda address: insecure(address, options=plain)
    credentials = tls.credentials()
    secured = [*options, *tls.channel_options()]
    return lambda address: secure(address, credentials, options=secured)


def unary_methods() -> dict[str, tuple[str, Any, Any]]:
    """``name: (path, request class, reply class)`` for every unary Cache RPC."""
    out = {}
    for method in _SERVICE.methods:
        if method.client_streaming or method.server_streaming:
            continue
        request_cls = getattr(cache_pb2, method.input_type.name)
        reply_cls = getattr(cache_pb2, method.output_type.name)
        out[method.name] = (f"/{_SERVICE.full_name}/{method.name}", request_cls, reply_cls)
    return out


_METHODS = unary_methods()
PIPELINE_PATH = f"/{_SERVICE.full_name}/Pipeline"
SUBSCRIBE_PATH = f"/{_SERVICE.full_name}/Subscribe"
_PIPELINE = (PIPELINE_PATH, cache_pb2.PipelineRequest, cache_pb2.PipelineReply)
_SUBSCRIBE = (SUBSCRIBE_PATH, cache_pb2.SubscribeRequest, cache_pb2.Invalidation)


class ChannelPool(Generic[C]):
    """Channels by address, and their per-RPC callables, made once each."""

    def __init__(self, connect: Callable[[str], C]) -> None:
        self._connect = connect
        self._channels: dict[str, C] = {}
        self._callables: dict[tuple[str, str], Any] = {}
        # Only creation takes the lock; lookups on the hot path are plain dict reads.
        self._lock = threading.Lock()
        self._closed = False

    def method(self, address: str, rpc: str) -> Any:
        """The callable for unary ``rpc`` on the node at ``address``; ValueError once closed."""
        found = self._callables.get((address, rpc))
        if found is not None:
            return found
        path, request_cls, reply_cls = _METHODS[rpc]
        return self._make(
            address,
            rpc,
            lambda channel: channel.unary_unary(
                path,
                request_serializer=request_cls.SerializeToString,
                response_deserializer=reply_cls.FromString,
            ),
        )

    def pipeline(self, address: str) -> Any:
        """The stream-stream callable of ``Pipeline`` on ``address``; ValueError once closed."""
        return self._streaming(address, "Pipeline", "stream_stream", _PIPELINE)

    def subscribe(self, address: str) -> Any:
        """The server-streaming callable of ``Subscribe`` on ``address``; ValueError once closed."""
        return self._streaming(address, "Subscribe", "unary_stream", _SUBSCRIBE)

    def _streaming(self, address: str, name: str, kind: str, method: tuple[str, Any, Any]) -> Any:
        found = self._callables.get((address, name))
        if found is not None:
            return found
        path, request_cls, reply_cls = method
        return self._make(
            address,
            name,
            lambda channel: getattr(channel, kind)(
                path,
                request_serializer=request_cls.SerializeToString,
                response_deserializer=reply_cls.FromString,
            ),
        )

    def _make(self, address: str, name: str, make: Callable[[Any], Any]) -> Any:
        with self._lock:
            if self._closed:
                raise ValueError("the client is closed")
            found = self._callables.get((address, name))
            if found is None:
                channel = self._channels.get(address)
                if channel is None:
                    channel = self._channels[address] = self._connect(address)
                found = self._callables[(address, name)] = make(channel)
            return found

    def addresses(self) -> list[str]:
        """The addresses a channel is open to."""
        return list(self._channels)

    def take_all(self) -> list[C]:
        """Close the pool: remove and return every channel, for the caller to close."""
        with self._lock:
            self._closed = True
            channels = list(self._channels.values())
            self._channels.clear()
            self._callables.clear()
        return channels
