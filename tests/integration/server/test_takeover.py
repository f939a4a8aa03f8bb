"""``--takeover-pid``: a replacement waits for the running node, then serves its keys.

Real processes on one data directory and one port: the replacement must not
bind or read the directory while the node it replaces still runs, and must
give up (touching nothing) when that node does not exit in time.
"""

from __future__ import annotations

import grpc

import slotcache
from slotcache.ctl.launcher import ServerProcess, free_port
from slotcache.v1 import admin_pb2, admin_pb2_grpc
from slotcache_server.takeover import standing_by
from tests.support.processes import ServerFactory, run_to_completion

KEYS = 500


def serving_pid(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        reply = admin_pb2_grpc.AdminStub(channel).Info(admin_pb2.InfoRequest(), timeout=5)
    return int(reply.server["pid"])


def test_a_replacement_takes_over_only_once_the_node_has_exited(servers: ServerFactory) -> None:
    old = servers("--snapshot", "on-shutdown")
    data = {b"k:%d" % i: b"v%d" % i for i in range(KEYS)}
    with slotcache.Client(old.address) as client:
        client.mset(data)
    new = servers.add(
        ServerProcess(
            old.data_dir,
            port=old.port,
            log_path=old.data_dir / "replacement.log",
            extra_args=("--snapshot", "on-shutdown", "--takeover-pid", str(old.pid)),
        )
    )
    new.spawn()
    assert new.wait_standing_by(20), new.log()
    # Standing by: the old node alone serves the port.
    assert serving_pid(old.address) == old.pid
    assert old.stop() == 0
    assert new.wait_ready(20), new.log()
    assert serving_pid(new.address) == new.pid
    with slotcache.Client(new.address) as client:
        assert client.mget(list(data)) == list(data.values())
    assert standing_by(new.data_dir) is None
    assert "taking over" in new.log()


def test_a_replacement_gives_up_when_the_node_does_not_exit(servers: ServerFactory) -> None:
    old = servers("--snapshot", "on-shutdown")
    files = sorted(p.name for p in old.data_dir.iterdir())
    done = run_to_completion(
        old.data_dir,
        "--port", str(free_port()),
        "--takeover-pid", str(old.pid),
        "--takeover-timeout", "0.3",
    )  # fmt: skip
    assert done.returncode == 1
    assert f"pid {old.pid} still runs after 0.3s" in done.stderr
    # Nothing of the old node's was touched, and no standby file is left.
    assert sorted(p.name for p in old.data_dir.iterdir()) == files
    assert old.proc is not None and old.proc.poll() is None
