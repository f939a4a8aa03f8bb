"""What the TLS flags ask for, and which combinations of them make sense.

Pure: it reads no file. The checks here run while the configuration is
parsed, so a contradictory command line fails before anything listens;
the files themselves are read (and checked) by :mod:`.tls` at startup.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class ClientAuth(StrEnum):
    """Whether clients of a TLS port must present a certificate (Redis's ``tls-auth-clients``)."""

    YES = "yes"
    NO = "no"
    OPTIONAL = "optional"

    @classmethod
    def parse(cls, text: str) -> ClientAuth:
        """``yes``, ``no`` or ``optional``."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise ValueError(f"{text!r} is not yes, no or optional") from None


@dataclass(frozen=True)
class TlsSettings:
    """The TLS part of a node's configuration."""

    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None
    auth_clients: ClientAuth = ClientAuth.YES
    # The TLS client port; 0: none.
    port: int = 0
    # Every node-to-node connection (bus, replication, migration, forwarding) is mutual TLS.
    cluster: bool = False

    @property
    def enabled(self) -> bool:
        """Whether any port or channel uses TLS."""
        return bool(self.port) or self.cluster

    def check(self, plaintext_port: int, cluster_enabled: bool) -> None:
        """Raise ValueError naming the flags that do not go together."""
        for problem in self._problems(plaintext_port, cluster_enabled):
            raise ValueError(problem)

    def _problems(self, plaintext_port: int, cluster_enabled: bool) -> list[str]:
        problems = []
        files = self.cert_file, self.key_file
        if self.enabled and None in files:
            problems.append("TLS needs a certificate: set --tls-cert-file and --tls-key-file")
        elif (self.cert_file is None) != (self.key_file is None):
            problems.append("--tls-cert-file and --tls-key-file go together; set both")
        elif self.cert_file is not None and not self.enabled:
            problems.append(
                "a certificate is set but nothing uses it: set --tls-port and/or --tls-cluster yes"
            )
        if self.ca_file is None and self.enabled:
            if self.cluster:
                problems.append("--tls-cluster verifies peers with a CA: set --tls-ca-file")
            elif self.auth_clients is not ClientAuth.NO:
                problems.append(
                    "TLS clients must present a certificate by default (--tls-auth-clients "
                    "yes), verified against a CA: set --tls-ca-file, or --tls-auth-clients no"
                )
        if not plaintext_port and not self.port:
            problems.append("--port 0 turns plaintext off, so a --tls-port is needed")
        if self.port and self.port == plaintext_port:
            problems.append(f"--tls-port and --port are both {self.port}; use two ports")
        if cluster_enabled and not plaintext_port and not self.cluster:
            problems.append(
                "with --port 0 nodes reach each other's client ports (forwarding) over TLS "
                "only: add --tls-cluster yes"
            )
        if self.cluster and not self.port:
            problems.append("--tls-cluster announces the TLS client port to peers: set --tls-port")
        return problems

    def announced_port(self, plaintext_port: int) -> int:
        """The client port peers and clients are told about (in topology and MOVED).

        As in Redis, it is the TLS port when node-to-node traffic is TLS or
        plaintext is off, and the plaintext port otherwise: one port is
        announced, and clients of the other kind connect to a node directly
        (``routing="proxy"``) during a migration to TLS.
        """
        if self.port and (self.cluster or not plaintext_port):
            return self.port
        return plaintext_port
