"""With users, a primary stopping still hands its slots over first.

Nodes hold no user's token: the handoff's Failover call is proven by node
authentication (a cluster secret here), which the Admin guard accepts for
that one RPC. A client without credentials is still refused it.
"""

from __future__ import annotations

import signal
import time

import grpc
import pytest

from slotcache.ctl import auth
from slotcache.ctl.cluster_ops import create_cluster
from slotcache.v1 import admin_pb2
from tests.support.acl import ADMIN, Stubs, error_of, rule, write_acl
from tests.support.nodes import wait_for
from tests.support.processes import ServerFactory

pytestmark = pytest.mark.slow

SECRET = b"handoff-secret-" + b"h" * 49


def role(address: str) -> str:
    with Stubs(address, ADMIN) as admin:
        reply = admin.call(admin.admin, "Info", admin_pb2.InfoRequest())
    return str(reply.server["role"])


def test_sigterm_hands_over_to_the_replica_when_there_are_users(tmp_path):
    acl = write_acl(tmp_path / "users.acl", f"user admin on {rule(ADMIN)} ~* +@all")
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET + b"\n")
    flags = ("--node-timeout", "1000", "--acl-file", str(acl), "--cluster-secret-file", str(secret))
    factory = ServerFactory(tmp_path / "servers")
    try:
        primary, replica = (factory.create(*flags, cluster=True) for _ in range(2))
        for node in (primary, replica):
            node.start()
        with auth.credentials(token=ADMIN):
            create_cluster([primary.address, replica.address], replicas=1)
        wait_for(lambda: role(replica.address) == "replica", 10, "the replica to attach")
        with Stubs(replica.address) as nobody:  # no credentials: not a member, not a user
            err = error_of(
                lambda: nobody.call(nobody.admin, "Failover", admin_pb2.FailoverRequest())
            )
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        assert role(replica.address) == "replica"
        sent = time.monotonic()
        primary.send_signal(signal.SIGTERM)
        assert primary.proc is not None
        assert primary.proc.wait(15) == 0
        # Promoted by the handoff, before the old primary's process was gone.
        assert role(replica.address) == "primary"
        assert time.monotonic() - sent < 5
    finally:
        factory.close()
