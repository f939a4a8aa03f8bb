"""The pure parts of ``clusterctl rolling-restart``: the order, and the flags a node keeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from slotcache.ctl.cluster_ops import OperationError
from slotcache.ctl.local import LocalNode
from slotcache.ctl.rolling_restart import Target, restart_order, server_flags

ROOT = Path("/tmp/cluster")


def target(port: int, role: str) -> Target:
    return Target(pid=port, node=LocalNode(ROOT, port), role=role, args=())


def test_replicas_go_first_then_primaries_each_by_port() -> None:
    targets = [target(7001, "primary"), target(7004, "replica"), target(7000, "primary")]
    targets += [target(7003, "replica")]
    order = [(t.role, t.node.port) for t in restart_order(targets)]
    assert order == [("replica", 7003), ("replica", 7004), ("primary", 7000), ("primary", 7001)]


def test_a_node_restarts_with_every_flag_but_those_the_launcher_sets() -> None:
    cmdline = [
        "/venv/bin/python", "-m", "slotcache_server.main",
        "--host", "127.0.0.1", "--port", "7000", "--data-dir", "/tmp/cluster/node-7000",
        "--cluster-enabled", "yes", "--bus-port", "17000",
        "--node-timeout", "1000", "--snapshot", "on-shutdown",
    ]  # fmt: skip
    bus_port, extra = server_flags(cmdline)
    assert bus_port == 17000
    assert extra == ["--node-timeout", "1000", "--snapshot", "on-shutdown"]


def test_a_tls_only_node_stays_tls_only() -> None:
    tls = ["--tls-port", "7000", "--tls-cert-file", "n.crt", "--tls-cluster", "yes"]
    cmdline = ["slotcache-server", "--port", "0", "--bus-port", "17000", *tls]
    assert server_flags(cmdline) == (17000, [*tls, "--port", "0"])


def test_a_node_without_a_bus_port_flag_is_refused() -> None:
    with pytest.raises(OperationError, match="--bus-port"):
        server_flags(["slotcache-server", "--port", "7000"])


def test_a_replacement_is_restarted_without_its_takeover_pid() -> None:
    # A node already restarted once runs with the pid it replaced; its own
    # replacement gets the launcher's new --takeover-pid, not that old one.
    cmdline = ["slotcache-server", "--bus-port", "17000", "--takeover-pid", "4242"]
    cmdline += ["--snapshot", "on-shutdown"]
    assert server_flags(cmdline) == (17000, ["--snapshot", "on-shutdown"])
