"""Every outgoing node-to-node channel is opened here, so TLS covers all of them at once.

The bus, replication, migration, forwarding and the shutdown handoff all
call :func:`open_peer_channel`. With ``--tls-cluster`` the node configures
it once at startup (:func:`use_tls`), and from then on each channel is
mutual TLS: the node presents its own certificate as the client's and
trusts only the cluster's CA. Otherwise channels are plaintext.

The setting is process-wide because a process runs one node.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from .security.tls import CertificateWatcher, channel_credentials

_watcher: CertificateWatcher | None = None
_credentials: tuple[int, grpc.ChannelCredentials] | None = None


def use_tls(watcher: CertificateWatcher | None) -> None:
    """Open later channels with the watcher's certificate (None: plaintext)."""
    global _watcher, _credentials
    _watcher, _credentials = watcher, None


def tls_enabled() -> bool:
    """Whether node-to-node channels are mutual TLS."""
    return _watcher is not None


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
