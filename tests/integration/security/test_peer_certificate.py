"""The verified client certificate of a call, as servicers read it from gRPC's auth context."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest

import slotcache
from slotcache.ctl.certs import Authority, LocalCerts
from slotcache_server.security.tls import (
    CertificateWatcher,
    PeerCertificate,
    peer_certificate,
    server_credentials,
)
from slotcache_server.security.tls_settings import ClientAuth

METHOD = "/test.Peer/Who"


async def _who(
    certs: LocalCerts, client_auth: ClientAuth, client: grpc.ChannelCredentials
) -> PeerCertificate | None:
    """Call a TLS server once; return what the servicer saw as the caller's certificate."""
    seen: list[PeerCertificate | None] = []

    async def who(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        seen.append(peer_certificate(context))
        return b""

    handler = grpc.method_handlers_generic_handler(
        "test.Peer", {"Who": grpc.unary_unary_rpc_method_handler(who)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    watcher = CertificateWatcher(certs.node.cert, certs.node.key, certs.ca)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(watcher, client_auth))
    await server.start()
    try:
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", client) as channel:
            await channel.unary_unary(METHOD)(b"", timeout=5)
    finally:
        await server.stop(0)
    return seen[0]


def test_a_verified_client_certificate_names_its_cn_and_sans(
    certs: LocalCerts, tmp_path: Path
) -> None:
    named = Authority.load(certs.ca).issue(tmp_path, "reporting-app", ("app.internal",))
    options = slotcache.TlsOptions(ca=certs.ca, cert=named.cert, key=named.key)
    seen = asyncio.run(_who(certs, ClientAuth.YES, options.credentials()))
    assert seen == PeerCertificate("reporting-app", ("app.internal",))
    assert seen.names == ("reporting-app", "app.internal")


@pytest.mark.parametrize("client_auth", [ClientAuth.NO, ClientAuth.OPTIONAL])
def test_without_required_client_certificates_a_call_names_nobody(
    certs: LocalCerts, client_auth: ClientAuth
) -> None:
    seen = asyncio.run(_who(certs, client_auth, certs.client_options().credentials()))
    assert seen is None
