"""TLS for sockets served by the ssl module (the RESP port): one context that follows rotation.

asyncio's ``create_server`` takes one ``ssl.SSLContext`` for the life of
the server, so the context built here asks the node's
:class:`~slotcache_server.security.tls.CertificateWatcher` on every
handshake (from the ClientHello callback, which runs whether or not the
client sends a server name) whether the files changed: a few ``stat``
calls. When they did, a new context is built from the files and the
handshake continues under it, so new connections get the new certificate
while established ones keep theirs, as on the gRPC ports.

Client certificates follow ``--tls-auth-clients``: required, optional
(asked for and verified when given; the ssl module, unlike grpcio, can do
that) or not asked for. TLS 1.2 is the oldest version accepted.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping
from typing import Any

from .tls import CertificateWatcher, Material
from .tls_settings import ClientAuth

log = logging.getLogger(__name__)

_VERIFY = {
    ClientAuth.YES: ssl.CERT_REQUIRED,
    ClientAuth.OPTIONAL: ssl.CERT_OPTIONAL,
    ClientAuth.NO: ssl.CERT_NONE,
}


def certificate_names(peercert: Mapping[str, Any] | None) -> tuple[str, ...]:
    """A verified certificate (``SSLObject.getpeercert()``) as ACL rules name it: cn:, san:.

    The ssl module returns a certificate's fields only once it passed
    verification, so an empty or missing one proves nobody.
    """
    if not peercert:
        return ()
    common = [v for rdn in peercert.get("subject", ()) for k, v in rdn if k == "commonName"]
    sans = [value for _kind, value in peercert.get("subjectAltName", ())]
    return (*(f"cn:{c}" for c in common[:1]), *(f"san:{s}" for s in sans))


def _context(watcher: CertificateWatcher, client_auth: ClientAuth) -> ssl.SSLContext:
    """A server context for the watcher's files as they are now."""
    material: Material = watcher.material
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    cert, key, _ca = watcher.files
    context.load_cert_chain(cert, key)
    context.verify_mode = _VERIFY[client_auth]
    if client_auth is not ClientAuth.NO and material.ca is not None:
        context.load_verify_locations(cadata=material.ca.decode())
    return context


def server_context(watcher: CertificateWatcher, client_auth: ClientAuth) -> ssl.SSLContext:
    """The context to serve with: it swaps in a rebuilt one when the files change."""
    first = _context(watcher, client_auth)
    seen, current = watcher.generation, first

    def on_hello(sslobj: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        nonlocal seen, current
        generation = watcher.refresh()
        if generation != seen:
            seen = generation
            try:
                current = _context(watcher, client_auth)
            except (OSError, ssl.SSLError) as exc:
                log.warning("keeping the previous RESP certificate: %s", exc)
        if current is not first:
            sslobj.context = current

    first.sni_callback = on_hello
    return first
