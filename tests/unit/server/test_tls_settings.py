"""The TLS flags: parsing, the combinations refused at startup, the announced ports."""

from __future__ import annotations

from pathlib import Path

import pytest

from slotcache_server.config import load_config
from slotcache_server.security.tls_settings import ClientAuth

FILES = ["--tls-cert-file", "n.crt", "--tls-key-file", "n.key", "--tls-ca-file", "ca.crt"]


def test_tls_flags_and_their_environment_variables() -> None:
    env = {
        "SLOTCACHE_TLS_CERT_FILE": "n.crt",
        "SLOTCACHE_TLS_KEY_FILE": "n.key",
        "SLOTCACHE_TLS_CA_FILE": "ca.crt",
        "SLOTCACHE_TLS_AUTH_CLIENTS": "optional",
        "SLOTCACHE_TLS_CLUSTER": "yes",
    }
    config = load_config(
        ["--port", "0", "--tls-port", "7100", "--cluster-enabled", "yes"], environ=env
    )
    assert config.tls_cert_file == Path("n.crt")
    assert config.tls_auth_clients is ClientAuth.OPTIONAL
    assert config.tls.enabled and config.tls_cluster
    # Plaintext off: the TLS port is announced, and the bus follows it as in Redis.
    assert (config.client_port, config.cluster_bus_port, config.metrics_listen_port) == (
        7100,
        17100,
        8100,
    )


def test_without_tls_nothing_changes() -> None:
    config = load_config([], environ={})
    assert not config.tls.enabled
    assert (config.client_port, config.cluster_bus_port) == (7000, 17000)


@pytest.mark.parametrize(
    ("extra", "announced"),
    [
        # Both ports open, nodes talk plaintext: the plaintext port is announced.
        (["--tls-port", "7100"], 7000),
        # Nodes talk TLS: the TLS port is announced.
        (["--tls-port", "7100", "--tls-cluster", "yes"], 7100),
    ],
)
def test_the_announced_client_port_during_a_migration_to_tls(
    extra: list[str], announced: int
) -> None:
    config = load_config([*FILES, "--cluster-enabled", "yes", *extra], environ={})
    assert config.port == 7000
    assert config.client_port == announced


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tls-port", "7100"], "TLS needs a certificate"),
        (["--tls-cert-file", "n.crt", "--tls-port", "7100"], "TLS needs a certificate"),
        (["--tls-cert-file", "n.crt"], "go together"),
        (FILES, "nothing uses it"),
        ([*FILES[:4], "--tls-port", "7100"], "--tls-auth-clients no"),
        ([*FILES[:4], "--tls-port", "7100", "--tls-cluster", "yes"], "verifies peers with a CA"),
        (["--port", "0"], "a --tls-port is needed"),
        ([*FILES, "--tls-port", "7000"], "use two ports"),
        (
            [*FILES, "--port", "0", "--tls-port", "7100", "--cluster-enabled", "yes"],
            "add --tls-cluster yes",
        ),
        ([*FILES, "--tls-cluster", "yes"], "set --tls-port"),
        (["--tls-auth-clients", "maybe"], "not yes, no or optional"),
    ],
)
def test_contradictory_tls_flags_exit_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        load_config(argv, environ={})
    assert message in capsys.readouterr().err


def test_tls_auth_clients_without_a_ca_is_fine_when_not_required() -> None:
    config = load_config([*FILES[:4], "--tls-port", "7100", "--tls-auth-clients", "no"], environ={})
    assert config.tls.enabled
