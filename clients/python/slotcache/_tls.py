"""TLS for the SDK's and clusterctl's channels: which CA to trust, which certificate to show."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import grpc

#: A PEM file's path, or its contents as bytes.
Pem = bytes | str | os.PathLike[str]


def read_pem(source: Pem | None, what: str) -> bytes | None:
    """The PEM bytes of ``source``: bytes are the contents, a str or path names a file."""
    if source is None or isinstance(source, bytes):
        return source
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the TLS {what} {source}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class TlsOptions:
    """Connect over TLS: ``slotcache.Client(addr, tls=TlsOptions(ca="ca.crt"))``.

    ``ca`` is the CA certificate the nodes' certificates are checked
    against (None: the system's trusted roots). ``cert`` and ``key`` are the
    client certificate and its key, which nodes require by default
    (``--tls-auth-clients yes``). Each is a file path or the PEM bytes.
    ``server_name`` overrides the name checked in a node's certificate
    (default: the host of the address dialled). Files are read once, when
    the client is created.
    """

    ca: Pem | None = None
    cert: Pem | None = None
    key: Pem | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs its key: give both cert and key")

    @property
    def has_client_cert(self) -> bool:
        """Whether the client presents a certificate of its own."""
        return self.cert is not None

    def credentials(self) -> grpc.ChannelCredentials:
        """The channel credentials of these options; ValueError if a file cannot be read."""
        return grpc.ssl_channel_credentials(
            root_certificates=read_pem(self.ca, "CA"),
            private_key=read_pem(self.key, "key"),
            certificate_chain=read_pem(self.cert, "certificate"),
        )

    def channel_options(self) -> list[tuple[str, str]]:
        """Channel arguments these options need (the name override)."""
        if self.server_name is None:
            return []
        return [("grpc.ssl_target_name_override", self.server_name)]
