"""Every outgoing node-to-node channel is opened here, so TLS covers all of them at once.

The bus, replication, migration, forwarding and the shutdown handoff all
call :func:`open_peer_channel`. With ``--tls-cluster`` the node configures
it once at startup (:func:`use_tls`), and from then on each channel is
mutual TLS: the node presents its own certificate as the client's and
trusts only the cluster's CA. Otherwise channels are plaintext.

The setting is process-wide because a process runs one node. Pools that
keep channels for the node's lifetime (the bus, forwarding) ask a
:class:`Rotation` before each use and reopen their channels once the
node's certificate has changed: a gRPC channel keeps the credentials it was
opened with, even when it reconnects.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import Any

import grpc

from .security.tls import CertificateWatcher, channel_credentials

# Pools check for a new certificate at most this often (each check is three stat calls).
CHECK_PERIOD_S = 1.0
# Calls still running on a channel opened with the old certificate get this long to finish.
RETIRE_GRACE_S = 60.0

_watcher: CertificateWatcher | None = None
_credentials: tuple[int, grpc.ChannelCredentials] | None = None
_checked_at = float("-inf")
_retiring: set[asyncio.Task[None]] = set()


def use_tls(watcher: CertificateWatcher | None) -> None:
    """Open later channels with the watcher's certificate (None: plaintext)."""
    global _watcher, _credentials
    _watcher, _credentials = watcher, None


def tls_enabled() -> bool:
    """Whether node-to-node channels are mutual TLS."""
    return _watcher is not None


def generation() -> int:
    """The certificate's generation: it changes when the node's certificate files do."""
    global _checked_at
    if _watcher is None:
        return 0
    now = time.monotonic()
    if now - _checked_at >= CHECK_PERIOD_S:
        _checked_at = now
        return _watcher.refresh()
    return _watcher.generation


class Rotation:
    """Whether the certificate changed since a pool last asked."""

    def __init__(self) -> None:
        self._seen = generation()

    def happened(self) -> bool:
        """True once after each change of certificate."""
        current = generation()
        changed, self._seen = current != self._seen, current
        return changed


def retire(channels: Iterable[grpc.aio.Channel]) -> None:
    """Close channels opened with an old certificate, letting their calls finish first."""
    for channel in channels:
        task = asyncio.ensure_future(channel.close(RETIRE_GRACE_S))
        _retiring.add(task)
        task.add_done_callback(_retiring.discard)


def open_peer_channel(target: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """A channel to another node's bus or client port, with this node's transport security.

    A channel opened after a certificate rotation presents the new certificate.
    """
    global _credentials
    if _watcher is None:
        return grpc.aio.insecure_channel(target, options=list(options))
    generation = _watcher.refresh()
    if _credentials is None or _credentials[0] != generation:
        _credentials = (generation, channel_credentials(_watcher.material))
    return grpc.aio.secure_channel(target, _credentials[1], options=list(options))


class PeerChannelPool:
    """One channel per peer target, reopened with the new certificate after a rotation.

    The bus and the forwarder each keep one; what they build on a channel
    (method callables) they drop whenever :meth:`rotated` says so.
    """

    def __init__(self, options: Sequence[tuple[str, Any]] = ()) -> None:
        self._options = options
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._rotation = Rotation()

    def rotated(self) -> bool:
        """Retire every channel if the certificate changed; True when it did."""
        if not self._rotation.happened():
            return False
        retire(self._channels.values())
        self._channels.clear()
        return True

    def get(self, target: str) -> grpc.aio.Channel:
        """The channel to ``target``, opened on first use."""
        channel = self._channels.get(target)
        if channel is None:
            channel = self._channels[target] = open_peer_channel(target, self._options)
        return channel

    async def close(self) -> None:
        """Close every channel now."""
        await asyncio.gather(*(c.close() for c in self._channels.values()))
        self._channels.clear()
