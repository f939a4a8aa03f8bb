"""How test servers are secured and how everything in the tests connects to them: one place.

By default servers are plaintext. With ``SLOTCACHE_TEST_TLS=1`` the suites
run with TLS on: certificates are generated once per session into a
temporary folder, every server the shared helpers start is TLS only with
mutual TLS on its client port and between nodes (``--tls-cluster``), and
every connection the helpers make (SDK clients, raw stubs, clusterctl in
the test's process and as a subprocess) presents the client certificate.

Tests never build a channel or a client themselves: they ask
:func:`current` for ``client_kwargs()`` or ``channel()``. Credentials of
other kinds (an ACL user's) become one more field of :class:`Security`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from slotcache.ctl import transport
from slotcache.ctl.certs import LocalCerts, generate_local

ENV = "SLOTCACHE_TEST_TLS"


@dataclass(frozen=True)
class Security:
    """What servers are started with and what connections present."""

    certs: LocalCerts | None = None

    def server_args(self) -> tuple[str, ...]:
        """Server flags beyond TLS's (ServerProcess adds those from ``certs`` itself)."""
        return ()

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``slotcache.Client`` and ``AsyncClient``."""
        return {} if self.certs is None else {"tls": self.certs.client_options()}

    def channel(self, address: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
        """A blocking channel to a node's client port."""
        if self.certs is None:
            return grpc.insecure_channel(address, options=list(options))
        tls = self.certs.client_options()
        return grpc.secure_channel(address, tls.credentials(), options=list(options))

    def ctl_env(self) -> dict[str, str]:
        """Environment variables that give a clusterctl subprocess the same identity."""
        return {} if self.certs is None else self.certs.ctl_env()


_current: Security | None = None


def enabled() -> bool:
    """Whether this session runs with TLS on."""
    return os.environ.get(ENV, "").strip().lower() in {"1", "yes", "true", "on"}


def current() -> Security:
    """This session's security, set up on first use."""
    global _current
    if _current is None:
        _current = _session_security() if enabled() else Security()
    return _current


def _session_security() -> Security:
    """Certificates for the whole session, and clusterctl told to use them."""
    folder = Path(tempfile.mkdtemp(prefix="slotcache-test-tls-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    security = Security(certs=generate_local(folder))
    # Subprocesses through the inherited environment, in-process calls through the transport.
    os.environ.update(security.ctl_env())
    _connect_clusterctl(security)
    return security


def _connect_clusterctl(security: Security) -> None:
    transport.use_tls(None if security.certs is None else security.certs.client_options())


def restore_clusterctl() -> None:
    """Make in-process clusterctl connect as the session does again (after a test changed it)."""
    _connect_clusterctl(current())
