"""The one place clusterctl opens channels, so its TLS flags reach every connection it makes.

Admin calls to client ports, bus health checks, readiness polls of local
servers and key commands all connect through here. The setting is
process-wide: one clusterctl run talks to one cluster with one identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from slotcache._channels import connector
from slotcache._tls import TlsOptions

#: Where each TLS flag's default comes from.
ENV_CA, ENV_CERT, ENV_KEY = "SLOTCACHE_TLS_CA", "SLOTCACHE_TLS_CERT", "SLOTCACHE_TLS_KEY"

_tls: TlsOptions | None = None


def tls_options(ca: str | None, cert: str | None, key: str | None) -> TlsOptions | None:
    """TLS from the flags' values (paths); None when none is given: plaintext.

    A client certificate alone implies TLS against the system's roots,
    like a CA alone implies TLS without a client certificate.
    """
    if ca is None and cert is None and key is None:
        return None
    return TlsOptions(ca=ca, cert=cert, key=key)


def use_tls(tls: TlsOptions | None) -> None:
    """Open every later channel with ``tls`` (None: plaintext)."""
    global _tls
    if tls is not None:
        tls.credentials()  # a missing or unreadable file fails now, with its name
    _tls = tls


def current_tls() -> TlsOptions | None:
    """The TLS channels are opened with, for the SDK clients clusterctl creates."""
    return _tls


def open_channel(address: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    """A blocking channel to ``address`` with clusterctl's transport security."""
    return connector(grpc.insecure_channel, grpc.secure_channel, _tls, options=options)(address)
