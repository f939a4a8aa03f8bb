"""slotcache servers and clusters whose nodes each live in a namespace of a network lab."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from slotcache.ctl.launcher import ServerProcess
from tests.support.netlab.lab import Host, NetLab
from tests.support.processes import Cluster, ServerFactory
from tests.support.workload import NODE_TIMEOUT_MS, start_cluster

# Every host has an address of its own, so every node can use the same ports.
CLIENT_PORT = 7000
BUS_PORT = 17000
# The test reaches the nodes from the bridge's address, not loopback: without
# users a node would refuse it (protected mode). The lab's network is the test's own.
OPEN = ("--protected-mode", "no")


class NamespacedServer(ServerProcess):
    """A cluster-mode server listening on its host's address inside the host's namespace.

    ``ip netns exec`` execs the server after entering the namespace, so the
    process id (signals, kills) is the server's own.
    """

    def __init__(self, host: Host, data_dir: Path, extra_args: Sequence[str] = ()) -> None:
        super().__init__(
            data_dir,
            port=CLIENT_PORT,
            extra_args=(*OPEN, *extra_args),
            host=host.ip,
            cluster=True,
            bus_port=BUS_PORT,
        )
        self.lab_host = host

    def command(self) -> list[str]:
        return self.lab_host.exec_argv(super().command())


@dataclass
class LabCluster:
    """A cluster of namespaced servers: ``hosts[i]`` is where ``cluster.nodes[i]`` runs."""

    cluster: Cluster
    hosts: list[Host]

    @property
    def addresses(self) -> list[str]:
        return self.cluster.addresses


def start_lab_cluster(
    lab: NetLab,
    factory: ServerFactory,
    primaries: int,
    replicas: int,
    *flags: str,
    node_timeout_ms: int = NODE_TIMEOUT_MS,
) -> LabCluster:
    """Like :func:`tests.support.workload.start_cluster`, one namespace per node (``n0``, ...)."""
    hosts: list[Host] = []

    def create(index: int, args: tuple[str, ...]) -> ServerProcess:
        host = lab.add_host(f"n{index}")
        hosts.append(host)
        return factory.add(NamespacedServer(host, factory.next_dir(), args))

    cluster = start_cluster(
        factory, primaries, replicas, *flags, node_timeout_ms=node_timeout_ms, create=create
    )
    return LabCluster(cluster, hosts)
