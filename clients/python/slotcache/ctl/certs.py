"""Throwaway certificates for trying TLS locally: a CA, a node certificate and a client one.

``clusterctl up --tls`` and the tests need certificates that exist nowhere
else: generated at run time, never committed, trusted by nothing but the
cluster they were made for. Keys are ECDSA P-256: quick to generate (tests
make several per session) and accepted by gRPC's TLS library.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from slotcache._tls import TlsOptions
from slotcache.contract import NODE_CERT_URI
from slotcache.ctl.connect_info import TlsFiles

LOCAL_HOSTS = ("127.0.0.1", "localhost")
DEFAULT_DAYS = 30
# Clocks of the machines involved may disagree by a little.
BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class KeyPair:
    """Where a certificate and its private key were written."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Authority:
    """A CA that can issue certificates; its key stays in memory or in the folder given."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_path: Path

    @classmethod
    def create(cls, directory: Path, name: str = "slotcache test CA") -> Authority:
        """A new self-signed CA, written to ``directory/ca.crt`` (and its key to ``ca.key``)."""
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + datetime.timedelta(days=DEFAULT_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        pair = _write(directory, "ca", cert, key)
        return cls(cert, key, pair.cert)

    @classmethod
    def load(cls, cert_path: Path) -> Authority:
        """The CA :meth:`create` wrote (its key beside it), to issue more or re-issue."""
        key = serialization.load_pem_private_key(
            cert_path.with_suffix(".key").read_bytes(), password=None
        )
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{cert_path.with_suffix('.key')} is not an EC key")
        return cls(x509.load_pem_x509_certificate(cert_path.read_bytes()), key, cert_path)

    def issue(
        self,
        directory: Path,
        name: str,
        hosts: Sequence[str] = LOCAL_HOSTS,
        days: int = DEFAULT_DAYS,
        node: bool = False,
    ) -> KeyPair:
        """A certificate for ``name`` valid for server and client use, as ``directory/name.*``.

        Nodes present the same certificate to clients and, as clients, to
        their peers, so every certificate allows both uses. Issuing again
        under the same name replaces the files (a rotation): the new one has
        a new serial number and a new key. A ``node`` certificate carries the
        node URI (NODE_CERT_URI), which a client one must not.
        """
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(_names(hosts, node)), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return _write(directory, name, cert, key)


@dataclass(frozen=True)
class LocalCerts:
    """Everything a local TLS cluster needs: the CA, one node certificate, one client one."""

    ca: Path
    node: KeyPair
    client: KeyPair

    def server_flags(self, cluster: bool = True) -> list[str]:
        """``slotcache-server`` flags that use these files (mutual TLS is the server's default)."""
        flags = [
            "--tls-cert-file",
            str(self.node.cert),
            "--tls-key-file",
            str(self.node.key),
            "--tls-ca-file",
            str(self.ca),
        ]
        return [*flags, "--tls-cluster", "yes"] if cluster else flags

    def client_options(self) -> TlsOptions:
        """The SDK's TLS options for a client presenting the client certificate."""
        return TlsOptions(ca=self.ca, cert=self.client.cert, key=self.client.key)

    def ctl_flags(self) -> list[str]:
        """The same for clusterctl, as flags."""
        return [
            "--tls-ca",
            str(self.ca),
            "--tls-cert",
            str(self.client.cert),
            "--tls-key",
            str(self.client.key),
        ]

    def client_files(self, cwd: Path | None = None) -> TlsFiles:
        """The client's files as a person types them: relative to ``cwd`` when inside it."""

        def typed(path: Path) -> str:
            if cwd is not None and path.is_relative_to(cwd):
                return str(path.relative_to(cwd))
            return str(path)

        return TlsFiles(typed(self.ca), typed(self.client.cert), typed(self.client.key))

    def ctl_env(self) -> dict[str, str]:
        """The same for clusterctl, as environment variables."""
        return self.client_files().env()


NODE_NAME = "node"
CLIENT_NAME = "client"


def generate_local(directory: Path, hosts: Sequence[str] = LOCAL_HOSTS) -> LocalCerts:
    """A fresh CA in ``directory`` and, from it, a node and a client certificate.

    One node certificate serves every node: on one machine they all answer
    for the same host names.
    """
    authority = Authority.create(directory)
    return LocalCerts(
        authority.cert_path,
        authority.issue(directory, NODE_NAME, hosts, node=True),
        authority.issue(directory, CLIENT_NAME, ()),
    )


def _names(hosts: Sequence[str], node: bool) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(NODE_CERT_URI)] if node else []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _write(
    directory: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> KeyPair:
    """Write the key (owner-only) and then the certificate; replaced files are renamed in.

    The renames keep a running node from reading half a file; a node that
    sees the new certificate before the new key keeps its old pair until
    both match (see the server's certificate watcher).
    """
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _replace(pair.key, key_pem, 0o600)
    _replace(pair.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return pair


def _replace(path: Path, data: bytes, mode: int) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    temporary.chmod(mode)
    temporary.replace(path)
