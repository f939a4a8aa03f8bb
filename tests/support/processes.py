"""Real slotcache-server processes for tests, always cleaned up, logs kept for reports.

Every process is started through :class:`slotcache.ctl.launcher.ServerProcess`
and registered before it starts, so even a half-started process is stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from slotcache.ctl.certs import LocalCerts
from slotcache.ctl.cluster_ops import create_cluster
from slotcache.ctl.launcher import ServerProcess, server_command
from tests.support import security


def run_to_completion(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One server run to completion (for starts that fail fast), with flags only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOTCACHE_")}
    return subprocess.run(
        [*server_command(), "--data-dir", str(data_dir), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


# Servers currently running, newest last; their logs go into failure reports.
LIVE: list[ServerProcess] = []
LOG_TAIL_CHARS = 8000


def log_sections() -> list[tuple[str, str]]:
    """Report sections with the tail of every live server's log."""
    sections = []
    for server in LIVE:
        log = server.log()
        if len(log) > LOG_TAIL_CHARS:
            log = "...\n" + log[-LOG_TAIL_CHARS:]
        sections.append((f"slotcache-server {server.address} log", log))
    return sections


class ServerFactory:
    """Starts servers with extra flags; :meth:`close` stops every one it started."""

    def __init__(self, base_dir: Path) -> None:
        self._base_dir = base_dir
        self._servers: list[ServerProcess] = []

    def start(
        self,
        *extra_args: str,
        ready_timeout: float = 20.0,
        cluster: bool = False,
        tls: LocalCerts | None = None,
    ) -> ServerProcess:
        server = self.create(*extra_args, cluster=cluster, tls=tls)
        return server.start(ready_timeout)

    __call__ = start

    def create(
        self, *extra_args: str, cluster: bool = False, tls: LocalCerts | None = None
    ) -> ServerProcess:
        """A registered server that is not started yet; TLS only with ``tls`` or the session's."""
        return self.add(
            ServerProcess(
                self.next_dir(),
                extra_args=(*security.current().server_args(), *extra_args),
                cluster=cluster,
                tls=tls or security.current().certs,
            )
        )

    def next_dir(self) -> Path:
        """The data directory of the next server this factory registers."""
        return self._base_dir / f"node{len(self._servers)}"

    def add(self, server: ServerProcess) -> ServerProcess:
        """Register a server built elsewhere (not started yet), so :meth:`close` stops it."""
        self._servers.append(server)
        LIVE.append(server)
        return server

    def close(self) -> None:
        """Stop every server, even if stopping one of them fails."""
        errors: list[Exception] = []
        while self._servers:
            server = self._servers.pop()
            try:
                # A test may have SIGSTOPped it; a stopped process would not act on SIGTERM.
                server.send_signal(signal.SIGCONT)
                server.stop()
            except Exception as exc:
                server.kill()
                errors.append(exc)
            finally:
                LIVE.remove(server)
        if errors:
            raise errors[0]


class Cluster:
    """A cluster of real cluster-mode servers formed with create_cluster."""

    def __init__(self, factory: ServerFactory, nodes: Sequence[ServerProcess]) -> None:
        self.factory = factory
        self.nodes = list(nodes)

    @classmethod
    def start(
        cls,
        factory: ServerFactory,
        primaries: int = 3,
        node_timeout_ms: int = 1000,
        *flags: str,
        replicas: int = 0,
        node_flags: Callable[[int], Sequence[str]] = lambda i: (),
    ) -> Cluster:
        """Start ``primaries`` nodes (and ``replicas`` per primary) and form a cluster.

        Nodes ``0..primaries-1`` are the primaries; replica ``j`` of primary
        ``i`` is node ``primaries + j * primaries + i``. ``node_flags(i)``
        adds flags of node ``i`` alone (a port of its own, say).
        """
        args = ("--node-timeout", str(node_timeout_ms), *flags)
        count = primaries * (replicas + 1)
        nodes = [factory.create(*args, *node_flags(i), cluster=True) for i in range(count)]
        for node in nodes:
            node.start()
        create_cluster([n.address for n in nodes], replicas=replicas)
        return cls(factory, nodes)

    @property
    def addresses(self) -> list[str]:
        """Client addresses, in creation order (node i owns the i-th third of the slots)."""
        return [n.address for n in self.nodes]

    def restart(self, index: int) -> ServerProcess:
        """Stop node ``index`` gracefully and start it again on the same ports and data dir."""
        old = self.nodes[index]
        old.stop()
        return old.start()

    def kill(self, index: int) -> ServerProcess:
        """SIGKILL node ``index``: no goodbye to its peers, nothing flushed."""
        node = self.nodes[index]
        node.kill()
        return node

    def revive(self, index: int) -> ServerProcess:
        """Start a killed or stopped node ``index`` again on the same ports and data dir."""
        return self.nodes[index].start()
