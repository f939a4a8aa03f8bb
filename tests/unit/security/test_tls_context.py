"""The ssl context of the RESP TLS port: versions, client certificates, rotation (in memory)."""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from slotcache.ctl.certs import NODE_NAME, Authority, LocalCerts, generate_local
from slotcache_server.security.tls import CertificateWatcher
from slotcache_server.security.tls_context import certificate_names, server_context
from slotcache_server.security.tls_settings import ClientAuth


def handshake(
    server: ssl.SSLContext, certs: LocalCerts, with_cert: bool = True
) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """A TLS handshake over memory buffers: (client side, server side)."""
    client_ctx = ssl.create_default_context(cafile=str(certs.ca))
    if with_cert:
        client_ctx.load_cert_chain(certs.client.cert, certs.client.key)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    srv = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(4):
        for side in (client, srv):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    # TLS 1.3 checks the client certificate after the client's handshake ends: read once.
    client.write(b"ping")
    s_in.write(c_out.read())
    assert srv.read(4) == b"ping"
    return client, srv


def served_serial(client: ssl.SSLObject) -> int:
    """The serial number of the certificate the server presented."""
    der = client.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@pytest.fixture
def certs(tmp_path: Path) -> LocalCerts:
    return generate_local(tmp_path)


def test_certificate_names_are_the_acl_rule_names() -> None:
    peercert = {
        "subject": ((("countryName", "NL"),), (("commonName", "ops"),)),
        "subjectAltName": (("DNS", "ops.example.com"), ("IP Address", "10.0.0.1")),
    }
    assert certificate_names(peercert) == ("cn:ops", "san:ops.example.com", "san:10.0.0.1")
    assert certificate_names({}) == ()
    assert certificate_names(None) == ()


def test_tls_1_2_or_later_and_client_certificates_as_configured(certs: LocalCerts) -> None:
    watcher = CertificateWatcher(certs.node.cert, certs.node.key, certs.ca)
    required = server_context(watcher, ClientAuth.YES)
    assert required.minimum_version is ssl.TLSVersion.TLSv1_2
    assert required.verify_mode is ssl.CERT_REQUIRED
    assert server_context(watcher, ClientAuth.OPTIONAL).verify_mode is ssl.CERT_OPTIONAL
    assert server_context(watcher, ClientAuth.NO).verify_mode is ssl.CERT_NONE
    _, srv = handshake(required, certs)
    assert certificate_names(srv.getpeercert()) == ("cn:client",)
    with pytest.raises(ssl.SSLError):
        handshake(required, certs, with_cert=False)


def test_new_handshakes_get_a_rotated_certificate(certs: LocalCerts) -> None:
    watcher = CertificateWatcher(certs.node.cert, certs.node.key, certs.ca)
    context = server_context(watcher, ClientAuth.YES)
    before = served_serial(handshake(context, certs)[0])
    Authority.load(certs.ca).issue(certs.ca.parent, NODE_NAME, node=True)
    rotated = x509.load_pem_x509_certificate(certs.node.cert.read_bytes()).serial_number
    assert rotated != before
    assert served_serial(handshake(context, certs)[0]) == rotated
    assert served_serial(handshake(context, certs)[0]) == rotated
