"""Users on a real node: authentication, read-only users, key patterns, Admin, the ACL log."""

from __future__ import annotations

import base64
import queue
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

import slotcache
from slotcache.ctl.certs import Authority
from slotcache.ctl.launcher import ServerProcess
from slotcache.v1 import admin_pb2
from slotcache.v1 import cache_pb2 as pb
from tests.support.acl import ADMIN, APP, READER, USERS, Stubs, error_of, rule, write_acl
from tests.support.processes import ServerFactory
from tests.support.security import current as session_security

SESSION = session_security().client_kwargs(as_session_user=False)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One node with the standard users, shared by the read-only tests of this module."""
    root = tmp_path_factory.mktemp("acl")
    factory = ServerFactory(root)
    try:
        yield factory.start("--acl-file", str(write_acl(root / "users.acl")))
    finally:
        factory.close()


def test_a_read_only_user_can_get_and_a_set_fails_with_permission_denied(node):
    with slotcache.Client(node.address, token=ADMIN, codec=None, **SESSION) as admin:
        admin.set(b"stock:1", b"7")
    with slotcache.Client(node.address, token=READER, codec=None, **SESSION) as reader:
        assert reader.get(b"stock:1") == b"7"
        assert reader.mget([b"stock:1", b"none"]) == [b"7", None]
        with pytest.raises(slotcache.PermissionDenied) as err:
            reader.set(b"stock:1", b"8")
        assert "set" in err.value.message and "'reader'" in err.value.message
        assert "%R~* +@read" in err.value.message  # the user's own rule
        assert reader.get(b"stock:1") == b"7"


def test_calls_without_valid_credentials_are_unauthenticated_and_told_nothing(node):
    with Stubs(node.address) as anonymous:
        missing = error_of(lambda: anonymous.call(anonymous.cache, "Get", pb.GetRequest(key=b"k")))
        assert missing.code() == grpc.StatusCode.UNAUTHENTICATED
        wrong = error_of(
            lambda: anonymous.call(
                anonymous.cache,
                "Get",
                pb.GetRequest(key=b"k"),
                (("authorization", "Bearer guessed-token-123"),),
            )
        )
        # A wrong token and a wrong user look alike, and neither is repeated back.
        basic = base64.b64encode(b"admin:guessed-token-123").decode()
        wrong_user = error_of(
            lambda: anonymous.call(
                anonymous.cache,
                "Get",
                pb.GetRequest(key=b"k"),
                (("authorization", f"Basic {basic}"),),
            )
        )
    assert wrong.code() == wrong_user.code() == grpc.StatusCode.UNAUTHENTICATED
    assert wrong.details() == wrong_user.details()
    assert "guessed" not in wrong.details() and "admin" not in wrong_user.details()
    with (
        slotcache.Client(node.address, token="guessed-token-123", **SESSION) as client,
        pytest.raises(slotcache.Unauthenticated),
    ):
        client.get(b"k")


def test_key_patterns_hold_for_single_and_multi_key_operations(node):
    with slotcache.Client(node.address, token=APP, codec=None, **SESSION) as app:
        app.set(b"app:1", b"one")
        assert app.get(b"app:1") == b"one"
        with pytest.raises(slotcache.PermissionDenied):
            app.set(b"public:1", b"x")  # read-only pattern
        with pytest.raises(slotcache.PermissionDenied):
            app.get(b"secret:1")
        assert app.mget([b"app:1", b"public:1"]) == [b"one", None]
        with pytest.raises(slotcache.PermissionDenied):
            app.mget([b"app:1", b"secret:1"])
        # A refused multi-key write writes nothing, not even its permitted keys.
        with pytest.raises(slotcache.PermissionDenied):
            app.mset({b"app:1": b"changed", b"secret:2": b"x"})
        assert app.get(b"app:1") == b"one"
        with pytest.raises(slotcache.PermissionDenied):
            app.incr(b"public:n")


def test_inside_a_pipeline_a_denied_op_gets_its_own_error_and_the_others_run(node):
    with Stubs(node.address, APP) as app:
        results = app.pipeline(
            pb.Operation(id=1, set=pb.SetRequest(key=b"app:p", value=b"v")),
            pb.Operation(id=2, set=pb.SetRequest(key=b"other:p", value=b"v")),
            pb.Operation(id=3, mget=pb.MGetRequest(keys=[b"app:p", b"other:p"])),
            pb.Operation(id=4, get=pb.GetRequest(key=b"app:p")),
        )
    assert [r.id for r in results] == [1, 2, 3, 4]
    assert results[0].set.applied
    for refused in (results[1], results[2]):
        assert refused.error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        assert refused.error.reason == "NOPERM"
        assert "other:p" in refused.error.message
    assert results[3].get.value == b"v"
    with Stubs(node.address, ADMIN) as admin:
        reply = admin.call(admin.cache, "Get", pb.GetRequest(key=b"other:p"))
    assert not reply.found


def test_a_non_admin_shutdown_is_refused_and_the_node_stays_up(node):
    for token in (READER, APP):
        with Stubs(node.address, token) as user:
            err = error_of(lambda u=user: u.call(u.admin, "Shutdown", admin_pb2.ShutdownRequest()))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "Shutdown" in err.details()
    time.sleep(0.3)  # a stop would begin with its settle pause; the node must still answer
    with Stubs(node.address, ADMIN) as admin:
        info = admin.call(admin.admin, "Info", admin_pb2.InfoRequest())
    assert info.server["pid"] == str(node.pid)


def test_the_acl_log_shows_the_denials(node):
    refused = pb.SetRequest(key=b"logged", value=b"v")
    with Stubs(node.address, APP) as app:
        for _ in range(3):
            error_of(lambda: app.call(app.cache, "Set", refused))
        error_of(lambda: app.call(app.admin, "SlowLog", admin_pb2.SlowLogRequest()))
    with Stubs(node.address, ADMIN) as admin:
        log = admin.acl_log()
    assert log.acl_enabled
    entry = next(e for e in log.entries if e.key == b"logged")
    assert (entry.reason, entry.user, entry.op, entry.count) == ("key", "app", "set", 3)
    assert entry.peer == "ipv4:127.0.0.1"
    assert log.totals["key"] >= 3
    assert any((e.reason, e.user, e.op) == ("command", "app", "SlowLog") for e in log.entries)
    # Whatever was refused, no token appears in the log.
    text = str(log)
    assert all(token not in text for token in (ADMIN, READER, APP, "guessed-token-123"))


def _wait_until_accepted(address: str, token: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    with Stubs(address, token) as user:
        while True:
            try:
                user.call(user.cache, "Get", pb.GetRequest(key=b"k"))
                return
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAUTHENTICATED or time.monotonic() > deadline:
                    raise
            time.sleep(0.02)


def test_reload_by_sighup_and_by_rpc_and_a_bad_file_keeps_the_users(servers, tmp_path: Path):
    acl = write_acl(tmp_path / "users.acl")
    node = servers("--acl-file", str(acl))
    newcomer = "newcomer-token-41aa"
    # An open stream of the reader, authenticated once.
    stream_user = Stubs(node.address, READER)
    pending: queue.Queue[pb.PipelineRequest | None] = queue.Queue()
    requests_iter = iter(pending.get, None)
    replies = stream_user.cache.Pipeline(requests_iter, metadata=stream_user.metadata, timeout=30)
    try:
        pending.put(pb.PipelineRequest(ops=[pb.Operation(id=1, get=pb.GetRequest(key=b"k"))]))
        assert next(replies).results[0].id == 1

        # SIGHUP: a new user, and the reader's token revoked.
        write_acl(acl, USERS[0], f"user newcomer on {rule(newcomer)} ~* +@read")
        node.send_signal(signal.SIGHUP)
        _wait_until_accepted(node.address, newcomer)
        with Stubs(node.address, READER) as reader:
            err = error_of(lambda: reader.call(reader.cache, "Get", pb.GetRequest(key=b"k")))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        # The open stream is authenticated again on its next message, and ends.
        pending.put(pb.PipelineRequest(ops=[pb.Operation(id=2, get=pb.GetRequest(key=b"k"))]))
        ended = error_of(lambda: next(replies))
        assert ended.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        pending.put(None)
        stream_user.channel.close()

    with Stubs(node.address, ADMIN) as admin:
        # A bad file: the call fails saying why, and the users in force stay.
        acl.write_text(f"user admin on {rule(ADMIN)} ~* +@all\nuser broken on >hunter2-secret\n")
        err = error_of(lambda: admin.call(admin.admin, "AclReload", admin_pb2.AclReloadRequest()))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "users.acl:2" in err.details() and "stay in force" in err.details()
        assert "hunter2" not in err.details()
        _wait_until_accepted(node.address, newcomer, timeout=0.5)
        # A good file by RPC: the reader is back, the newcomer is gone.
        write_acl(acl)
        reply = admin.call(admin.admin, "AclReload", admin_pb2.AclReloadRequest())
        assert reply.users == len(USERS)
        _wait_until_accepted(node.address, READER, timeout=0.5)
        info = admin.call(admin.admin, "Info", admin_pb2.InfoRequest())
    assert (info.stats["acl.reloads"], info.stats["acl.reload_failures"]) == (2, 1)
    with Stubs(node.address, newcomer) as gone:
        err = error_of(lambda: gone.call(gone.cache, "Get", pb.GetRequest(key=b"k")))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_client_certificate_maps_to_its_user(servers, certs, tmp_path: Path):
    issued = Authority.load(certs.ca).issue(tmp_path, "reporting-app", ("app.internal",))
    acl = write_acl(
        tmp_path / "users.acl",
        f"user admin on {rule(ADMIN)} ~* +@all",
        "user reports on san:app.internal %R~* +@read",
    )
    node = servers("--acl-file", str(acl), tls=certs)
    reports = slotcache.TlsOptions(ca=certs.ca, cert=issued.cert, key=issued.key)
    with slotcache.Client(node.address, tls=certs.client_options(), token=ADMIN) as admin:
        admin.set(b"report:1", b"42")
    with slotcache.Client(node.address, tls=reports, codec=None) as client:
        assert client.get(b"report:1") == b"42"
        with pytest.raises(slotcache.PermissionDenied) as err:
            client.set(b"report:1", b"0")
    assert "'reports'" in err.value.message
    # The node's own client certificate names no user: it proves nobody.
    with (
        slotcache.Client(node.address, tls=certs.client_options()) as anonymous,
        pytest.raises(slotcache.Unauthenticated),
    ):
        anonymous.get(b"report:1")
