"""Nodes with a RESP port for the Redis-protocol tests, and the Redis tools beside them.

Every node gets a free RESP port of its own; the cluster helpers wait until
every node's CLUSTER SLOTS names a RESP port for every slot, which is when
cluster-aware Redis clients can start (the ports arrive by gossip).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
import redis

from slotcache.ctl.launcher import LOOPBACK, ServerProcess, free_port
from tests.support.processes import Cluster, ServerFactory

SLOTS = 16384


def resp_flags(port: int, routing: str = "moved") -> tuple[str, ...]:
    """The flags that open a RESP port."""
    return ("--resp-port", str(port), "--resp-routing", routing)


@dataclass
class RespCluster:
    """A cluster whose every node serves RESP; ``ports[i]`` is node ``i``'s RESP port."""

    cluster: Cluster
    ports: list[int]

    @property
    def nodes(self) -> list[ServerProcess]:
        """The server processes, in creation order."""
        return self.cluster.nodes

    def client(self, index: int, **kwargs: object) -> redis.Redis:
        """A plain redis-py client of node ``index``."""
        return redis.Redis(LOOPBACK, self.ports[index], socket_timeout=5, **kwargs)  # type: ignore[arg-type]

    def startup_nodes(self) -> list[redis.cluster.ClusterNode]:
        """Every node, as RedisCluster's startup nodes."""
        return [redis.cluster.ClusterNode(LOOPBACK, p) for p in self.ports]


def start_resp_node(factory: ServerFactory, *flags: str, routing: str = "moved") -> int:
    """A standalone node with a RESP port; returns that port."""
    port = free_port()
    factory.start(*resp_flags(port, routing), *flags)
    return port


def start_resp_cluster(
    factory: ServerFactory,
    primaries: int = 3,
    replicas: int = 1,
    routing: str = "moved",
    node_timeout_ms: int = 1000,
) -> RespCluster:
    """A cluster of nodes with RESP ports, ready for cluster-aware clients."""
    ports = [free_port() for _ in range(primaries * (replicas + 1))]
    cluster = Cluster.start(
        factory,
        primaries,
        node_timeout_ms,
        replicas=replicas,
        node_flags=lambda i: resp_flags(ports[i], routing),
    )
    resp = RespCluster(cluster, ports)
    wait_slots_known(ports, replicas)
    return resp


def slot_map(port: int) -> list[tuple[int, int, int, list[int]]]:
    """CLUSTER SLOTS of one node: (start, end, primary port, replica ports)."""
    with redis.Redis(LOOPBACK, port, socket_timeout=5) as r:
        rows = r.execute_command("CLUSTER SLOTS")
    out = []
    for row in rows if isinstance(rows, list) else []:
        start, end, primary, *replicas = row
        out.append((int(start), int(end), int(primary[1]), [int(x[1]) for x in replicas]))
    return out


def wait_slots_known(ports: Sequence[int], replicas: int, timeout: float = 20.0) -> None:
    """Wait until every node maps every slot to a RESP port, with ``replicas`` replicas each."""
    deadline = time.monotonic() + timeout
    views: list[object] = []
    while time.monotonic() < deadline:
        try:
            views = [slot_map(p) for p in ports]
        except redis.RedisError:
            time.sleep(0.1)
            continue
        complete = all(
            sum(e - s + 1 for s, e, primary, reps in view) == SLOTS
            and all(primary in ports and len(reps) == replicas for _, _, primary, reps in view)
            for view in views
        )
        if complete and all(v == views[0] for v in views):
            return
        time.sleep(0.1)
    raise AssertionError(f"CLUSTER SLOTS did not settle: {views}")


def redis_tool(name: str) -> str:
    """The path of redis-cli, redis-benchmark or redis-server; skips the test without it."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install redis-server)")
    return path


def redis_cli(port: int, *args: str, cluster: bool = False, timeout: float = 10.0) -> str:
    """Run redis-cli against a RESP port; its output, stripped."""
    cmd = [redis_tool("redis-cli"), "-h", LOOPBACK, "-p", str(port)]
    if cluster:
        cmd.append("-c")
    done = subprocess.run(
        [*cmd, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    return (done.stdout + done.stderr).strip()
