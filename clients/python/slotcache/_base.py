"""What the blocking and the asyncio client share besides the core: options and inspection.

Both clients take the same constructor arguments and build the same
sans-I/O pieces from them (the routing core, the value layer, the command
builders); only their I/O shells differ.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from slotcache._channels import ChannelPool
from slotcache._commands import Commands, Key, as_key
from slotcache._core import (
    DEFAULT_ADDRESS,
    DEFAULT_MAX_REDIRECTS,
    DEFAULT_TIMEOUT_S,
    ClientCore,
    Routing,
)
from slotcache._credentials import credentials_metadata
from slotcache._getorset import GetOrSet
from slotcache._nearcache import NOT_CACHED, NearCache, NearCacheConfig
from slotcache._retry import RetryPolicy
from slotcache._stats import ClientStats
from slotcache._tls import TlsOptions
from slotcache._values import Values
from slotcache.codecs import Codec, MsgpackCodec
from slotcache.crypto import Keyring
from slotcache.v1.cache_pb2 import SubscribeRequest

#: The default codec: msgpack for everything that is not bytes.
DEFAULT_CODEC = MsgpackCodec()


class Restartable(Protocol):
    """A node's Subscribe stream, as the base class needs it."""

    def restart(self) -> None:
        """End the current stream and open a new one."""
        ...


class ClientBase:
    """Options, the core, the value layer and read-only inspection, for both clients.

    See :class:`slotcache.Client` for the arguments.
    """

    #: Made by the shell's ``_setup_io``.
    _pool: ChannelPool[Any]

    def __init__(
        self,
        addresses: str | Sequence[str] = DEFAULT_ADDRESS,
        *,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        routing: Routing = "smart",
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        retry: RetryPolicy | None = None,
        codec: Codec | None = DEFAULT_CODEC,
        keyring: Keyring | None = None,
        accept_plaintext: bool = False,
        read_from_replicas: bool = False,
        pipelining: bool = True,
        max_in_flight: int | None = None,
        near_cache: NearCacheConfig | None = None,
        token: str | None = None,
        user: str | None = None,
        password: str | None = None,
        tls: TlsOptions | None = None,
    ) -> None:
        if tls is not None and not isinstance(tls, TlsOptions):
            raise TypeError("tls must be a slotcache.TlsOptions")
        #: TLS for every channel the client opens (None: plaintext).
        self._tls = tls
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        # Sent with every call and stream (Topology, redirects and Subscribe included).
        self._credentials = credentials_metadata(token, user, password)
        self._core = ClientCore(
            addresses,
            timeout=timeout,
            routing=routing,
            max_redirects=max_redirects,
            retry=retry,
            pipelining=pipelining,
        )
        self._values = Values(codec, keyring, accept_plaintext=accept_plaintext)
        self._commands = Commands(self._values, read_from_replicas)
        #: Messages outstanding per node stream (None: the shell's default).
        self._max_in_flight = max_in_flight
        self._closed = False
        self._near: NearCache | None = None
        if near_cache is not None:
            if not isinstance(near_cache, NearCacheConfig):
                raise TypeError("near_cache must be a slotcache.NearCacheConfig")
            self._near = NearCache(near_cache, self._core.stats)
            self._core.near_cache = self._near
        #: The Subscribe stream of each node the near cache holds values of.
        self._subscribers: Mapping[str, Restartable] = {}
        self._setup_io()
        if self._near is not None:
            self._near.on_new_node = self._subscribe
            self._near.on_forget = self._resubscribe

    def _setup_io(self) -> None:
        """Create the shell's I/O state (channels, streams, locks); no I/O happens yet."""

    def _subscribe(self, address: str) -> None:
        """Open the Subscribe stream of a node the client now reads from (once per node)."""
        raise NotImplementedError

    def _subscription_opener(self, address: str) -> Callable[[SubscribeRequest], Any]:
        """What opens the Subscribe stream of ``address``, credentials included."""
        pool = self._pool
        credentials = self._credentials or None
        return lambda request: pool.subscribe(address)(request, metadata=credentials)

    def _resubscribe(self, address: str) -> None:
        """The node refused our subscription id: replace its stream now."""
        subscriber = self._subscribers.get(address)
        if subscriber is not None:
            subscriber.restart()

    @property
    def stats(self) -> ClientStats:
        """Plain-number metrics: operations, latency, faults, redirects, retries, pipelining."""
        return self._core.stats

    @property
    def near_cache(self) -> NearCache | None:
        """The near cache if enabled (``len()``, ``size_bytes``, ``subscriptions()``)."""
        return self._near

    @property
    def routing(self) -> Routing:
        """``"smart"`` or ``"proxy"``."""
        return self._core.routing

    @property
    def keyring(self) -> Keyring | None:
        """The keyring values are encrypted with, if any."""
        return self._values.keyring

    def owner_of(self, key: Key) -> str | None:
        """The address a call for ``key`` would go to now (None before the map is loaded)."""
        return self._core.owner_of(as_key(key))

    def _get_or_set(self, key: Key, ttl_ms: int | None, beta: float, ttl_jitter: float) -> GetOrSet:
        return GetOrSet(as_key(key), ttl_ms, beta, ttl_jitter)

    def _near_get(self, near: NearCache, key: Key) -> Any:
        """``get``'s answer from the near cache, or NOT_CACHED: before any command is built.

        Decodes the stored bytes on every hit rather than caching the decoded
        object, which a caller could mutate (raw bytes pass through untouched).
        """
        name = key if type(key) is bytes else as_key(key)
        stored = self._core.near_hit(near, name)
        if stored is None or stored is NOT_CACHED:
            return stored
        return self._values.load(name, stored)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the client is closed")


def now_ms() -> float:
    """Wall-clock milliseconds: get_or_set expiries are shared between processes."""
    return time.time() * 1000.0
