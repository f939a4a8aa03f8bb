"""TLS material for a node: server credentials that follow rotated files, peer credentials.

gRPC asks :func:`server_credentials`'s fetcher for a certificate before
every new connection's handshake. The fetcher compares the files' stat
signatures (a few ``stat`` calls, no reads) and reloads them only when
they changed, so a rotated certificate reaches new connections without a
restart while established connections, and their streams, keep going. A
half-finished rotation (a new certificate beside the old key) fails the
key check and leaves the previous pair in use until both files match.

Protocol versions: gRPC's TLS library (BoringSSL) negotiates TLS 1.2 or
1.3 only and grpcio exposes no setting to widen that, so TLS 1.0 and 1.1
are refused at the handshake.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from .tls_settings import ClientAuth, TlsSettings

log = logging.getLogger(__name__)


class TlsError(ValueError):
    """The certificate, key or CA files cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Material:
    """The PEM bytes of a node's certificate chain, its key and the CA it trusts."""

    cert: bytes
    key: bytes
    ca: bytes | None


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


def load_material(cert: Path, key: Path, ca: Path | None) -> Material:
    """Read and check the files: each parses, and the key belongs to the certificate."""
    material = Material(
        _read(cert, "certificate (--tls-cert-file)"),
        _read(key, "private key (--tls-key-file)"),
        _read(ca, "CA file (--tls-ca-file)") if ca is not None else None,
    )
    try:
        leaf = x509.load_pem_x509_certificates(material.cert)[0]
    except ValueError:
        raise TlsError(f"{cert} holds no PEM certificate") from None
    try:
        private = serialization.load_pem_private_key(material.key, password=None)
    except (ValueError, TypeError):
        raise TlsError(f"{key} holds no unencrypted PEM private key") from None
    if private.public_key() != leaf.public_key():
        raise TlsError(f"the private key {key} does not match the certificate {cert}")
    if ca is not None and material.ca is not None:
        try:
            x509.load_pem_x509_certificates(material.ca)
        except ValueError:
            raise TlsError(f"{ca} holds no PEM CA certificate") from None
    return material


Signature = tuple[tuple[int, int, int], ...]


class CertificateWatcher:
    """The current material, reloaded when a file's mtime, size or inode changes.

    ``generation`` goes up on every successful reload, so each consumer
    (the client port, the bus, outgoing channels) can tell whether it has
    already taken the current material.
    """

    def __init__(self, cert: Path, key: Path, ca: Path | None) -> None:
        self._paths = tuple(p for p in (cert, key, ca) if p is not None)
        self._files = (cert, key, ca)
        self._signature = self._stat()
        self.material = load_material(*self._files)
        self.generation = 0
        # gRPC calls fetchers from its own threads.
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: TlsSettings) -> CertificateWatcher:
        """The watcher of a configuration with TLS on (its files are set: see TlsSettings)."""
        assert settings.cert_file is not None and settings.key_file is not None
        return cls(settings.cert_file, settings.key_file, settings.ca_file)

    @property
    def files(self) -> tuple[Path, Path, Path | None]:
        """The certificate, key and CA paths (for consumers that load files themselves)."""
        return self._files

    def _stat(self) -> Signature:
        signature = []
        for path in self._paths:
            try:
                st = os.stat(path)
            except OSError:
                signature.append((0, 0, 0))
            else:
                signature.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(signature)

    def refresh(self) -> int:
        """Reload if the files changed; return the generation now current."""
        signature = self._stat()
        if signature == self._signature:
            return self.generation
        with self._lock:
            if signature != self._signature:
                self._signature = signature
                try:
                    self.material = load_material(*self._files)
                except TlsError as exc:
                    log.warning("keeping the previous certificate: %s", exc)
                else:
                    self.generation += 1
                    log.info("loaded a new certificate (generation %d)", self.generation)
        return self.generation


def _server_config(material: Material, trust_clients: bool) -> Any:
    return grpc.ssl_server_certificate_configuration(
        [(material.key, material.cert)],
        root_certificates=material.ca if trust_clients else None,
    )


def server_credentials(
    watcher: CertificateWatcher, client_auth: ClientAuth
) -> grpc.ServerCredentials:
    """Credentials for a TLS port that serve the watcher's current certificate.

    ``ClientAuth.YES`` requires a client certificate signed by the CA.
    grpcio's Python API has no "request but do not require" mode: with
    ``OPTIONAL`` (as with ``NO``) the handshake does not ask for a client
    certificate, so a client's certificate carries no identity then.
    """
    require = client_auth is ClientAuth.YES
    seen = watcher.generation

    def fetch() -> Any:
        nonlocal seen
        generation = watcher.refresh()
        if generation == seen:
            return None
        seen = generation
        return _server_config(watcher.material, require)

    return grpc.dynamic_ssl_server_credentials(
        _server_config(watcher.material, require), fetch, require_client_authentication=require
    )


def channel_credentials(material: Material) -> grpc.ChannelCredentials:
    """Credentials for a node's outgoing connection: its certificate as the client's, the CA."""
    return grpc.ssl_channel_credentials(
        root_certificates=material.ca,
        private_key=material.key,
        certificate_chain=material.cert,
    )


@dataclass(frozen=True)
class PeerCertificate:
    """The verified client certificate of a call: its subject CN and subject alternative names."""

    common_name: str
    sans: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The CN and then every SAN, for matching against configured names."""
        return (self.common_name, *self.sans) if self.common_name else self.sans


def _texts(values: Iterable[bytes] | None) -> tuple[str, ...]:
    return tuple(v.decode(errors="replace") for v in values or ())


def peer_certificate(context: grpc.aio.ServicerContext[Any, Any]) -> PeerCertificate | None:
    """The certificate the caller presented and gRPC verified against the CA, if any.

    gRPC only fills ``x509_*`` properties for a certificate that passed
    verification during the handshake, so their presence is the proof; a
    plaintext call, or a TLS call without a client certificate, has none.
    """
    properties: Mapping[str, Iterable[bytes]] = context.auth_context()
    pem = list(properties.get("x509_pem_cert") or ())
    if not pem:
        return None
    common = _texts(properties.get("x509_common_name"))
    sans = _texts(properties.get("x509_subject_alternative_name"))
    if not common:
        # Older gRPC releases do not split the CN out; read it from the certificate.
        cert = x509.load_pem_x509_certificate(pem[0])
        common = tuple(
            str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        )
    return PeerCertificate(common[0] if common else "", sans)


def add_port(
    server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None
) -> int:
    """Listen on ``address``, TLS when there are ``credentials``; the bound port (0: failed)."""
    if credentials is None:
        return server.add_insecure_port(address)
    return server.add_secure_port(address, credentials)


@dataclass(frozen=True)
class NodeTls:
    """A node's TLS credentials: for its TLS client port, for its bus, for its peer channels."""

    watcher: CertificateWatcher | None = None
    # The TLS client port's, with the configured client authentication.
    client: grpc.ServerCredentials | None = None
    # The bus port's under --tls-cluster: a peer must present a certificate from the CA.
    bus: grpc.ServerCredentials | None = None

    @classmethod
    def load(cls, settings: TlsSettings) -> NodeTls:
        """Read and check the files; raises TlsError. Without TLS, nothing is read."""
        if not settings.enabled:
            return cls()
        watcher = CertificateWatcher.from_settings(settings)
        return cls(
            watcher,
            server_credentials(watcher, settings.auth_clients) if settings.port else None,
            server_credentials(watcher, ClientAuth.YES) if settings.cluster else None,
        )
