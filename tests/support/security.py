"""How test servers are secured and how everything in the tests connects to them: one place.

By default servers are plaintext. With ``SLOTCACHE_TEST_TLS=1`` the suites
run with TLS on: certificates are generated once per session into a
temporary folder, every server the shared helpers start is TLS only with
mutual TLS on its client port and between nodes (``--tls-cluster``), and
every connection the helpers make (SDK clients, raw stubs, clusterctl in
the test's process and as a subprocess) presents the client certificate.

With ``SLOTCACHE_TEST_ACL=1`` (alone or with TLS) every server the shared
helpers start also has users (``--acl-file``): one administrator allowed
every key, whose token every connection the helpers make presents, so the
suites run with authentication and a permission check on every call.

Tests never build a channel or a client themselves: they ask
:func:`current` for ``client_kwargs()`` or ``channel()``. Tests of users
bring their own (``as_session_user=False``).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
from collections import namedtuple
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from slotcache._credentials import Metadata, credentials_metadata
from slotcache.ctl import auth, transport
from slotcache.ctl.certs import LocalCerts, generate_local

ENV = "SLOTCACHE_TEST_TLS"
ACL_ENV = "SLOTCACHE_TEST_ACL"
# Not a secret: it opens only the test servers of one session.
SESSION_TOKEN = "test-session-admin-token"


@dataclass(frozen=True)
class Security:
    """What servers are started with and what connections present."""

    certs: LocalCerts | None = None
    # The session's users, and the token of its administrator (None: no users).
    acl_file: Path | None = None
    token: str | None = None

    def client_kwargs(self, as_session_user: bool = True) -> dict[str, Any]:
        """Keyword arguments for ``slotcache.Client`` and ``AsyncClient``."""
        kwargs: dict[str, Any] = {} if self.certs is None else {"tls": self.certs.client_options()}
        if self.token is not None and as_session_user:
            kwargs["token"] = self.token
        return kwargs

    def channel(
        self,
        address: str,
        options: Sequence[tuple[str, Any]] = (),
        as_session_user: bool = True,
    ) -> grpc.Channel:
        """A blocking channel to a node's client port (every call as the session's user)."""
        if self.certs is None:
            channel = grpc.insecure_channel(address, options=list(options))
        else:
            tls = self.certs.client_options()
            channel = grpc.secure_channel(address, tls.credentials(), options=list(options))
        if self.token is None or not as_session_user:
            return channel
        return grpc.intercept_channel(channel, _WithMetadata(credentials_metadata(self.token)))

    def ctl_env(self) -> dict[str, str]:
        """Environment variables that give a clusterctl subprocess the same identity."""
        env = {} if self.certs is None else self.certs.ctl_env()
        if self.token is not None:
            env[auth.TOKEN_ENV] = self.token
        return env

    def server_args(self) -> tuple[str, ...]:
        """Flags every test server starts with (before the test's own, which win)."""
        return () if self.acl_file is None else ("--acl-file", str(self.acl_file))


class _Details(
    namedtuple(
        "_Details",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    """A call's details with more metadata."""


class _WithMetadata(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the session user's credentials to every call of a test's raw stubs."""

    def __init__(self, metadata: Metadata) -> None:
        self._metadata = metadata

    def _details(self, details: Any) -> _Details:
        return _Details(
            details.method,
            details.timeout,
            (*(details.metadata or ()), *self._metadata),
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


_current: Security | None = None


def enabled(env: str = ENV) -> bool:
    """Whether this session runs with TLS on (or, with ``ACL_ENV``, with users)."""
    return os.environ.get(env, "").strip().lower() in {"1", "yes", "true", "on"}


def current() -> Security:
    """This session's security, set up on first use."""
    global _current
    if _current is None:
        _current = _session_security() if enabled() or enabled(ACL_ENV) else Security()
    return _current


def _session_security() -> Security:
    """Certificates for the whole session, and clusterctl told to use them."""
    folder = Path(tempfile.mkdtemp(prefix="slotcache-test-security-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    acl_file, token = None, None
    if enabled(ACL_ENV):
        token = SESSION_TOKEN
        acl_file = folder / "users.acl"
        digest = hashlib.sha256(token.encode()).hexdigest()
        acl_file.write_text(f"user session on #{digest} ~* +@all\n")
    security = Security(generate_local(folder) if enabled() else None, acl_file, token)
    # Subprocesses through the inherited environment, in-process calls through the transport.
    os.environ.update(security.ctl_env())
    _connect_clusterctl(security)
    return security


def _connect_clusterctl(security: Security) -> None:
    transport.use_tls(None if security.certs is None else security.certs.client_options())
    auth.configure(security.token, None)


def restore_clusterctl() -> None:
    """Make in-process clusterctl connect as the session does again (after a test changed it)."""
    _connect_clusterctl(current())
