"""Users in a cluster: forwarded calls carry the caller, and the owner enforces its own rules.

The two nodes are given different ACL files on purpose: the entry node lets
``app`` write any key, the owner only ``app:*``. A key outside that pattern
then passes the entry node and is refused by the owner, which shows that
the owner checks the forwarded caller itself (and logs it under its name).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest

import slotcache
from slotcache.ctl import auth
from slotcache.ctl.cluster_ops import create_cluster
from slotcache.ctl.launcher import ServerProcess
from slotcache.v1 import admin_pb2
from slotcache.v1 import cache_pb2 as pb
from tests.support.acl import ADMIN, APP, Stubs, error_of, rule, write_acl
from tests.support.nodes import key_in_slot
from tests.support.processes import ServerFactory
from tests.support.security import current as session_security

ENTRY_SLOT, OWNER_SLOT = 100, 16000  # node 0 owns 0-8191, node 1 8192-16383
ADMIN_LINE = f"user admin on {rule(ADMIN)} ~* +@all"


SESSION = session_security().client_kwargs(as_session_user=False)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    root = tmp_path_factory.mktemp("acl-cluster")
    factory = ServerFactory(root)
    lenient = write_acl(root / "entry.acl", ADMIN_LINE, f"user app on {rule(APP)} ~* +@all -@admin")
    strict = write_acl(
        root / "owner.acl", ADMIN_LINE, f"user app on {rule(APP)} ~app:* +@read +@write"
    )
    try:
        started = [
            factory.create("--node-timeout", "1000", "--acl-file", str(acl), cluster=True)
            for acl in (lenient, strict)
        ]
        for node in started:
            node.start()
        with auth.credentials(token=ADMIN):
            create_cluster([n.address for n in started])
        yield started
    finally:
        factory.close()


def test_a_forwarded_call_is_checked_by_the_owner_as_its_caller(nodes):
    entry, owner = nodes
    allowed = key_in_slot(b"app:", OWNER_SLOT, "fwd")
    outside = key_in_slot(b"other:", OWNER_SLOT, "fwd")
    with Stubs(entry.address, APP) as app:  # no redirect metadata: the entry node forwards
        assert app.call(app.cache, "Set", pb.SetRequest(key=allowed, value=b"v")).applied
        err = error_of(lambda: app.call(app.cache, "Set", pb.SetRequest(key=outside, value=b"v")))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "~app:*" in err.details()  # the owner's rule, not the entry node's
    with Stubs(owner.address, ADMIN) as admin:
        assert admin.call(admin.cache, "Get", pb.GetRequest(key=allowed)).value == b"v"
        assert not admin.call(admin.cache, "Get", pb.GetRequest(key=outside)).found
        log = admin.acl_log()
    entry_host = f"ipv4:{entry.host}"
    assert any(
        e.user == "app" and e.op == "set" and e.key == outside and e.peer == entry_host
        for e in log.entries
    )


def test_multi_key_calls_split_over_owners_are_checked_on_every_owner(nodes):
    entry, _ = nodes
    here = key_in_slot(b"other:", ENTRY_SLOT, "m")
    there_ok = key_in_slot(b"app:", OWNER_SLOT, "m")
    there_refused = key_in_slot(b"other:", OWNER_SLOT, "m")
    with Stubs(entry.address, APP) as app:
        entries = [pb.SetRequest(key=k, value=b"1") for k in (here, there_ok)]
        assert list(app.call(app.cache, "MSet", pb.MSetRequest(entries=entries)).applied) == [
            True,
            True,
        ]
        err = error_of(
            lambda: app.call(app.cache, "MGet", pb.MGetRequest(keys=[here, there_refused]))
        )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


def test_forwarded_pipeline_ops_are_refused_one_by_one_by_the_owner(nodes):
    entry, _ = nodes
    allowed = key_in_slot(b"app:", OWNER_SLOT, "pipe")
    outside = key_in_slot(b"other:", OWNER_SLOT, "pipe")
    with Stubs(entry.address, APP) as app:
        results = app.pipeline(
            pb.Operation(id=1, set=pb.SetRequest(key=allowed, value=b"p")),
            pb.Operation(id=2, set=pb.SetRequest(key=outside, value=b"p")),
            pb.Operation(id=3, get=pb.GetRequest(key=allowed)),
        )
    assert results[0].set.applied
    assert results[1].error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert "~app:*" in results[1].error.message
    assert results[2].get.value == b"p"


def test_a_claimed_identity_from_a_client_is_not_believed(nodes):
    _, owner = nodes
    forged = (("slotcache-acl-user", "admin"),)
    with Stubs(owner.address) as anyone:
        err = error_of(
            lambda: anyone.call(anyone.admin, "Info", admin_pb2.InfoRequest(), metadata=forged)
        )
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        as_app = (*forged, ("authorization", f"Bearer {APP}"))
        err = error_of(
            lambda: anyone.call(anyone.admin, "Info", admin_pb2.InfoRequest(), metadata=as_app)
        )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "'app'" in err.details()


def test_the_smart_client_sends_its_token_on_redirects_and_on_subscribe(nodes):
    entry, owner = nodes
    key = key_in_slot(b"app:", OWNER_SLOT, "near")
    near = slotcache.NearCacheConfig(max_staleness_ms=None)
    with (
        slotcache.Client(
            entry.address, token=APP, codec=None, near_cache=near, **SESSION
        ) as reader,
        slotcache.Client(
            owner.address, token=APP, codec=None, routing="proxy", **SESSION
        ) as writer,
    ):
        writer.set(key, b"1")
        assert reader.get(key) == b"1"
        assert reader.get(key) == b"1"  # from the near cache, once subscribed
        assert reader.near_cache is not None and reader.near_cache.subscriptions()
        writer.set(key, b"2")
        deadline = time.monotonic() + 5
        while reader.get(key) != b"2":
            assert time.monotonic() < deadline, "the invalidation never arrived"
            time.sleep(0.01)
