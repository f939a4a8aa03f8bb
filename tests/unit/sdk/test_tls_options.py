"""TlsOptions and the hints a TLS mismatch earns, without a network."""

from __future__ import annotations

from pathlib import Path

import pytest

import slotcache
from slotcache._tls import read_pem
from slotcache.ctl import transport
from slotcache.ctl.main import build_parser
from slotcache.errors import CONNECT_HINT, connect_hint


def test_a_certificate_needs_its_key() -> None:
    with pytest.raises(ValueError, match="give both cert and key"):
        slotcache.TlsOptions(cert="client.crt")
    with pytest.raises(ValueError, match="give both cert and key"):
        slotcache.TlsOptions(key="client.key")


def test_pem_comes_from_bytes_or_from_a_path(tmp_path: Path) -> None:
    pem = b"-----BEGIN CERTIFICATE-----\n"
    (tmp_path / "ca.crt").write_bytes(pem)
    assert read_pem(pem, "CA") == pem
    assert read_pem(tmp_path / "ca.crt", "CA") == pem
    assert read_pem(str(tmp_path / "ca.crt"), "CA") == pem
    with pytest.raises(ValueError, match=r"cannot read the TLS CA .*missing\.crt"):
        read_pem(tmp_path / "missing.crt", "CA")


def test_clients_refuse_anything_but_tls_options() -> None:
    with pytest.raises(TypeError, match=r"slotcache\.TlsOptions"):
        slotcache.Client("127.0.0.1:7000", tls={"ca": "ca.crt"})  # type: ignore[arg-type]


def test_a_closed_connection_or_a_failed_handshake_points_at_tls() -> None:
    closed = connect_hint("ipv4:127.0.0.1:7000: Socket closed")
    assert "may require TLS" in closed and "--tls-cert" in closed
    handshake = connect_hint("Ssl handshake failed: SSL_ERROR_SSL: WRONG_VERSION_NUMBER")
    assert "TLS handshake failed" in handshake
    assert connect_hint("Connection refused") == CONNECT_HINT


def test_clusterctl_takes_tls_from_flags_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert transport.tls_options(None, None, None) is None
    assert transport.tls_options("ca.crt", None, None) == slotcache.TlsOptions(ca="ca.crt")
    monkeypatch.setenv(transport.ENV_CA, "env-ca.crt")
    args = build_parser().parse_args(["nodes", "127.0.0.1:7000", "--tls-cert", "c.crt"])
    assert (args.tls_ca, args.tls_cert, args.tls_key) == ("env-ca.crt", "c.crt", None)
