"""Users, permissions, protected mode and TLS on the RESP port, with redis-py against real nodes.

One node serves every test but the protected-mode one: its users are the
security tests' (an administrator, a read-only user, an application
narrowed to ``app:*`` and reading ``public:*``) plus one named by the test
client certificate's CN; its gRPC port is mutual TLS, and it has a
plaintext and a TLS RESP port.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography import x509
from redis.backoff import NoBackoff
from redis.retry import Retry

from slotcache.ctl.certs import CLIENT_NAME, NODE_NAME, Authority, LocalCerts, generate_local
from slotcache.ctl.launcher import LOOPBACK, free_port
from slotcache.v1 import admin_pb2, admin_pb2_grpc
from tests.support import acl
from tests.support.netns import namespace_link, server_on_all_addresses
from tests.support.nodes import CHANNEL_OPTIONS, RPC_TIMEOUT
from tests.support.processes import ServerFactory
from tests.support.resp import resp_flags
from tests.support.security import Security

# A refusal is the answer under test: no retries, no backoff.
NO_RETRY: dict[str, Any] = {"socket_timeout": 5, "retry": Retry(NoBackoff(), 0)}
CERT_USER = f"user certreader on cn:{CLIENT_NAME} %R~public:* +@read"


@dataclass(frozen=True)
class Node:
    """The node under test: its ports, its ACL file and the certificates it trusts."""

    grpc_address: str
    resp_port: int
    tls_port: int
    acl_file: Path
    certs: LocalCerts

    def client(self, **kwargs: Any) -> redis.Redis:
        """A plaintext redis-py client of the RESP port."""
        return redis.Redis(LOOPBACK, self.resp_port, **NO_RETRY, **kwargs)

    def tls_client(self, with_cert: bool = True, **kwargs: Any) -> redis.Redis:
        """A redis-py client of the TLS RESP port, presenting the client certificate or not."""
        cert = self.certs.client
        return redis.Redis(
            LOOPBACK,
            self.tls_port,
            **NO_RETRY,
            ssl=True,
            ssl_ca_certs=str(self.certs.ca),
            ssl_certfile=str(cert.cert) if with_cert else None,
            ssl_keyfile=str(cert.key) if with_cert else None,
            **kwargs,
        )

    def admin(self, rpc: str, request: Any) -> Any:
        """An Admin RPC as the administrator, over the mutual-TLS gRPC port."""
        channel = Security(certs=self.certs).channel(
            self.grpc_address, CHANNEL_OPTIONS, as_session_user=False
        )
        with channel:
            stub = admin_pb2_grpc.AdminStub(channel)
            return getattr(stub, rpc)(request, timeout=RPC_TIMEOUT, metadata=acl.bearer(acl.ADMIN))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    base = tmp_path_factory.mktemp("resp-security")
    certs = generate_local(base / "certs")
    acl_file = acl.write_acl(base / "users.acl", *acl.USERS, CERT_USER)
    resp_port, tls_port = free_port(), free_port()
    factory = ServerFactory(base)
    try:
        server = factory.start(
            *resp_flags(resp_port),
            "--resp-tls-port",
            str(tls_port),
            "--acl-file",
            str(acl_file),
            tls=certs,
        )
        yield Node(server.address, resp_port, tls_port, acl_file, certs)
    finally:
        factory.close()


def test_a_token_user_reads_and_writes_and_a_read_only_user_may_not_write(node: Node) -> None:
    with node.client(password=acl.ADMIN) as admin:
        assert admin.set("k", "v")
        assert admin.get("k") == b"v"
    with node.client(username="reader", password=acl.READER) as reader:
        assert reader.get("k") == b"v"
        with pytest.raises(redis.exceptions.NoPermissionError) as refused:
            reader.set("k", "w")
        assert str(refused.value) == "User reader has no permissions to run the 'set' command"
    with node.client(password=acl.ADMIN) as admin:
        assert admin.get("k") == b"v"


def test_key_patterns_are_enforced_per_key(node: Node) -> None:
    with node.client(password=acl.ADMIN) as admin:
        admin.set("public:news", "hello")
    # HELLO 3 AUTH <user> <token> authenticates as AUTH does.
    with node.client(username="app", password=acl.APP, protocol=3) as app:
        assert app.set("app:1", "x")
        assert app.incr("app:n") == 1
        assert app.get("public:news") == b"hello"
        assert app.mget("app:1", "public:news") == [b"x", b"hello"]
        for forbidden in (
            lambda: app.set("other", "x"),
            lambda: app.get("other"),
            lambda: app.set("public:news", "changed"),
            lambda: app.mget("app:1", "other"),
            lambda: app.delete("app:1", "other"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError) as refused:
                forbidden()
            assert "access one of the keys used as arguments" in str(refused.value)
        assert app.get("app:1") == b"x"
    with node.client(password=acl.ADMIN) as admin:
        assert admin.get("public:news") == b"hello"
        assert admin.exists("other") == 0


def test_without_auth_commands_get_noauth_and_a_wrong_token_wrongpass(node: Node) -> None:
    with node.client(protocol=2) as anonymous, pytest.raises(redis.AuthenticationError) as noauth:
        anonymous.get("k")
    assert str(noauth.value) == "Authentication required."
    # A RESP3 client's HELLO without AUTH is refused as Redis refuses it.
    with node.client(protocol=3) as anonymous, pytest.raises(redis.AuthenticationError) as hello:
        anonymous.get("k")
    assert str(hello.value).startswith("HELLO must be called with the client already authenticated")
    guess = "not-the-token-31337"
    for kwargs in ({"password": guess}, {"username": "app", "password": guess}):
        with node.client(**kwargs) as wrong, pytest.raises(redis.AuthenticationError) as refused:
            wrong.ping()
        assert str(refused.value) == "invalid username-password pair or user is disabled."
    with (
        node.client(username="nobody", password=acl.ADMIN) as wrong,
        pytest.raises(redis.AuthenticationError),
    ):
        wrong.ping()
    log = node.admin("AclLog", admin_pb2.AclLogRequest())
    text = str(log)
    assert guess not in text and acl.ADMIN not in text
    auth = [e for e in log.entries if e.reason == "auth"]
    assert {e.user for e in auth} >= {"", "app", "nobody"}


def test_denials_go_to_the_acl_log(node: Node) -> None:
    with (
        node.client(username="reader", password=acl.READER) as reader,
        pytest.raises(redis.exceptions.NoPermissionError),
    ):
        reader.set("logged", "x")
    with (
        node.client(username="app", password=acl.APP) as app,
        pytest.raises(redis.exceptions.NoPermissionError),
    ):
        app.get("secret:logged")
    entries = node.admin("AclLog", admin_pb2.AclLogRequest()).entries
    assert any(e.reason == "command" and e.user == "reader" and e.op == "set" for e in entries)
    assert any(e.reason == "key" and e.user == "app" and e.key == b"secret:logged" for e in entries)


def test_introspection_needs_a_user_and_client_list_needs_admin(node: Node) -> None:
    with node.client(username="reader", password=acl.READER) as reader:
        assert reader.cluster("myid")
        assert "redis_version" in reader.info()
        with pytest.raises(redis.exceptions.NoPermissionError) as refused:
            reader.client_list()
        assert "'client|list'" in str(refused.value)
    with node.client(password=acl.ADMIN) as admin:
        assert admin.client_list()


def test_tls_with_a_client_certificate_and_refused_without(node: Node) -> None:
    # The certificate's CN names a user: the connection is that user without AUTH.
    with node.tls_client() as by_cert:
        assert by_cert.get("public:news") in (None, b"hello")
        with pytest.raises(redis.exceptions.NoPermissionError):
            by_cert.set("public:news", "x")
    with node.tls_client(password=acl.ADMIN) as admin:
        assert admin.set("tls:k", "v")
        assert admin.get("tls:k") == b"v"
    with node.tls_client(with_cert=False) as no_cert, pytest.raises(redis.ConnectionError):
        no_cert.ping()
    with (
        redis.Redis(LOOPBACK, node.tls_port, **NO_RETRY) as plaintext,
        pytest.raises(redis.ConnectionError),
    ):
        plaintext.ping()


def served_serial(node: Node) -> int:
    """The serial number of the certificate a new TLS RESP connection is served."""
    context = ssl.create_default_context(cafile=str(node.certs.ca))
    context.load_cert_chain(node.certs.client.cert, node.certs.client.key)
    with (
        socket.create_connection((LOOPBACK, node.tls_port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_new_tls_connections_get_a_rotated_certificate(node: Node) -> None:
    before = served_serial(node)
    with node.tls_client(password=acl.ADMIN) as established:
        assert established.ping()
        Authority.load(node.certs.ca).issue(node.certs.ca.parent, NODE_NAME, node=True)
        rotated = x509.load_pem_x509_certificate(node.certs.node.cert.read_bytes())
        assert rotated.serial_number != before
        assert served_serial(node) == rotated.serial_number
        assert established.ping()


def test_an_acl_reload_applies_to_open_connections(node: Node) -> None:
    reader = node.client(username="reader", password=acl.READER)
    try:
        assert reader.ping()
        acl.write_acl(node.acl_file, *acl.USERS[:1], CERT_USER)
        assert node.admin("AclReload", admin_pb2.AclReloadRequest()).users == 2
        with pytest.raises(redis.AuthenticationError, match="Authentication required"):
            reader.get("k")
        with (
            node.client(username="reader", password=acl.READER) as again,
            pytest.raises(redis.AuthenticationError, match="invalid username-password"),
        ):
            again.ping()
    finally:
        reader.close()
        acl.write_acl(node.acl_file, *acl.USERS, CERT_USER)
        assert node.admin("AclReload", admin_pb2.AclReloadRequest()).users == 4


# A RESP client run inside the namespace: one PING, its answer or error as JSON.
RESP_CLIENT = """
import json, sys, redis
host, port = sys.argv[1], int(sys.argv[2])
try:
    with redis.Redis(host, port, socket_timeout=10) as r:
        print(json.dumps({"reply": str(r.ping()), "error": ""}))
except redis.RedisError as exc:
    print(json.dumps({"reply": "", "error": f"{type(exc).__name__}: {exc}"}))
"""


def test_protected_mode_refuses_a_non_loopback_resp_client(tmp_path: Path) -> None:
    port = free_port()
    with (
        namespace_link() as link,
        server_on_all_addresses(tmp_path / "protected", *resp_flags(port)),
    ):
        refused = link.run(RESP_CLIENT, link.host_ip, str(port))
        with redis.Redis(LOOPBACK, port, socket_timeout=5) as local:
            assert local.ping()
    assert not refused["reply"], json.dumps(refused)
    assert "protected mode" in refused["error"]
    assert "--protected-mode no" in refused["error"]
