"""The RESP gate: AUTH, NOAUTH, NOPERM and protected mode in Redis's words."""

from __future__ import annotations

from pathlib import Path

import pytest

from slotcache.contract import OPS
from slotcache_server.config import ServerConfig
from slotcache_server.resp.errors import RespError
from slotcache_server.resp.gate import DENIED, NO_PASSWORD, NOAUTH, WRONGPASS, Gate, Identity
from slotcache_server.resp.table import COMMANDS
from slotcache_server.security.access import Access
from tests.support import acl

PEER = "ipv4:127.0.0.1:5000"
REMOTE = "ipv4:10.0.0.5:5000"
GET, SET, MGET = COMMANDS["get"], COMMANDS["set"], COMMANDS["mget"]


def refusal(call: object) -> str:
    with pytest.raises(RespError) as refused:
        call()  # type: ignore[operator]
    return refused.value.text


@pytest.fixture
def gate(tmp_path: Path) -> Gate:
    access = Access(acl.write_acl(tmp_path / "users.acl"), protected_mode=True)
    access.load()
    return Gate(access)


def test_without_users_auth_answers_as_redis_with_no_password() -> None:
    gate = Gate()
    assert not gate.enforcing
    assert refusal(lambda: gate.authenticate(None, b"x")) == NO_PASSWORD
    assert refusal(lambda: gate.authenticate("bob", b"x")) == WRONGPASS
    assert gate.authenticate("default", b"anything").user == "default"
    assert gate.unrestricted(gate.initial(REMOTE))
    gate.hello(gate.initial(REMOTE))


def test_protected_mode_refuses_remote_peers_without_a_certificate() -> None:
    access = Access(None, protected_mode=True)
    gate = Gate(access)
    assert refusal(lambda: gate.initial(REMOTE)) == DENIED
    assert DENIED.startswith("DENIED ") and "--protected-mode no" in DENIED
    assert gate.initial(PEER).user == "default"
    assert gate.initial(REMOTE, ("cn:client",)).user == "default"
    assert [e.reason for e in access.log.latest()] == ["protected"]


def test_an_unauthenticated_connection_may_only_authenticate(gate: Gate) -> None:
    nobody = gate.initial(PEER)
    assert nobody.caller is None
    assert refusal(lambda: gate.check(nobody, GET, OPS["get"], [b"k"])) == NOAUTH
    assert refusal(lambda: gate.check(nobody, COMMANDS["ping"], None, ())) == NOAUTH
    gate.check(nobody, COMMANDS["auth"], None, ())
    assert not gate.unrestricted(nobody)
    assert refusal(lambda: gate.hello(nobody)).startswith("NOAUTH HELLO must be called")
    gate.hello(gate.authenticate("reader", acl.READER.encode(), PEER))


def test_tokens_alone_or_with_a_user_name_authenticate(gate: Gate) -> None:
    admin = gate.authenticate(None, acl.ADMIN.encode(), PEER)
    assert admin.user == "admin" and gate.unrestricted(admin)
    # redis-py sends AUTH default <password> for a password alone.
    assert gate.authenticate("default", acl.ADMIN.encode(), PEER).user == "admin"
    assert gate.authenticate("reader", acl.READER.encode(), PEER).user == "reader"
    assert refusal(lambda: gate.authenticate("reader", acl.ADMIN.encode(), PEER)) == WRONGPASS
    assert refusal(lambda: gate.authenticate(None, b"guess", PEER)) == WRONGPASS


def test_commands_and_keys_are_checked_with_redis_messages(gate: Gate) -> None:
    reader = gate.authenticate("reader", acl.READER.encode(), PEER)
    gate.check(reader, GET, OPS["get"], [b"any"])
    assert refusal(lambda: gate.check(reader, SET, OPS["set"], [b"k"])) == (
        "NOPERM User reader has no permissions to run the 'set' command"
    )
    app = gate.authenticate("app", acl.APP.encode(), PEER)
    gate.check(app, SET, OPS["set"], [b"app:1"])
    gate.check(app, MGET, OPS["mget"], [b"app:1", b"public:x"])
    assert refusal(lambda: gate.check(app, MGET, OPS["mget"], [b"app:1", b"x"])) == (
        "NOPERM User app has no permissions to access one of the keys used as arguments"
    )
    assert refusal(lambda: gate.admin(app, "client|list")).endswith("run the 'client|list' command")
    assert refusal(lambda: gate.subscribe(app, every_key=True)).startswith("NOPERM")
    gate.subscribe(app, every_key=False)
    log = gate.access.log.latest()  # type: ignore[union-attr]
    assert {(e.reason, e.user, e.op) for e in log} >= {
        ("command", "reader", "set"),
        ("key", "app", "mget"),
        ("command", "app", "client|list"),
    }


def test_a_reload_applies_to_authenticated_connections(gate: Gate, tmp_path: Path) -> None:
    access = gate.access
    assert access is not None
    reader = gate.authenticate("reader", acl.READER.encode(), PEER)
    app = gate.authenticate("app", acl.APP.encode(), PEER)
    narrowed = f"user app on {acl.rule(acl.APP)} ~app:* +@read"
    acl.write_acl(tmp_path / "users.acl", acl.USERS[0], narrowed)
    assert access.reload()[0]
    assert refusal(lambda: gate.check(reader, GET, OPS["get"], [b"k"])) == NOAUTH
    assert reader == Identity("(unauthenticated)", None, PEER)
    gate.check(app, GET, OPS["get"], [b"app:1"])
    assert "'set'" in refusal(lambda: gate.check(app, SET, OPS["set"], [b"app:1"]))
    assert refusal(lambda: gate.authenticate("reader", acl.READER.encode(), PEER)) == WRONGPASS


def test_a_nopass_default_user_serves_connections_without_auth(tmp_path: Path) -> None:
    access = Access(
        acl.write_acl(tmp_path / "users.acl", *acl.USERS, "user default on nopass %R~* +@read"),
        protected_mode=True,
    )
    access.load()
    gate = Gate(access)
    anyone = gate.initial(REMOTE)
    assert anyone.user == "default"
    gate.check(anyone, GET, OPS["get"], [b"k"])
    assert gate.authenticate("default", b"whatever", REMOTE).user == "default"


def test_the_tls_resp_port_needs_the_nodes_tls_and_is_announced_like_the_client_port(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match="--resp-tls-port serves the node's TLS certificate"):
        ServerConfig(resp_tls_port=6380)
    files = {
        "tls_cert_file": tmp_path / "n.crt",
        "tls_key_file": tmp_path / "n.key",
        "tls_ca_file": tmp_path / "ca.crt",
        "tls_port": 7443,
    }
    both = ServerConfig(resp_port=6379, resp_tls_port=6380, **files)  # type: ignore[arg-type]
    assert both.announced_resp_port == 6379
    assert ServerConfig(resp_tls_port=6380, **files).announced_resp_port == 6380  # type: ignore[arg-type]
