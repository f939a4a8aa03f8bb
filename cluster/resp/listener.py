"""The RESP listener: the server socket, its connections, and what they share of the node.

The listener runs on the node's event loop, beside grpc.aio: commands run
in the same loop steps as gRPC calls, against the same keyspace, so no
lock is needed anywhere. Everything a connection needs of the node comes
through :class:`RespDeps`, wired once in ``Node``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..executor import Executor
from ..holds import WriteHolds
from ..membership.model import FAIL, PFAIL, Peer
from ..observability.calls import CallRecorder
from ..ownership import Ownership
from ..services.cache import CacheService
from ..services.durability import Durability
from ..tracking.service import Tracking
from .cluster_info import ClusterView, NodeRow, rows
from .connection import RespConnection
from .gate import Gate
from .outbox import Outbox

log = logging.getLogger(__name__)
ROUTING_MOVED = "moved"


@dataclass
class RespDeps:
    """The node's parts a RESP connection uses; the same objects the gRPC services use."""

    executor: Executor
    ownership: Ownership
    holds: WriteHolds
    durability: Durability
    service: CacheService
    tracking: Tracking
    recorder: CallRecorder
    server_info: Callable[[], dict[str, str]]
    stats: Callable[[], dict[str, int]]
    cluster_enabled: bool
    routing: str
    # Largest request a connection may send (a command with all its arguments).
    max_request_bytes: int
    gate: Gate


class RespListener:
    """Accepts RESP connections and keeps the figures INFO and CLIENT LIST report."""

    def __init__(self, deps: RespDeps) -> None:
        self.deps = deps
        self.redirect = deps.routing == ROUTING_MOVED
        self.port = 0
        self.connections: dict[int, RespConnection] = {}
        self.connections_received = 0
        self.commands_processed = 0
        self._next_id = 0
        self._server: asyncio.Server | None = None
        self.outbox = Outbox()

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> int:
        """Listen on ``host:port`` (with TLS when ``tls`` is given); return the port bound."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._connection, host, port, reuse_address=True, ssl=tls
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("RESP on %s:%d (routing: %s)", host, self.port, self.deps.routing)
        return self.port

    def _connection(self) -> RespConnection:
        self._next_id += 1
        self.connections_received += 1
        return RespConnection(self, self._next_id)

    def opened(self, conn: RespConnection) -> None:
        """A connection is established."""
        self.connections[conn.id] = conn

    def closed(self, conn: RespConnection) -> None:
        """A connection is gone."""
        self.connections.pop(conn.id, None)

    async def stop(self) -> None:
        """Stop accepting and close every connection."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections.values()):
            conn.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    # ---- views for the commands ---------------------------------------------------

    def cluster_view(self) -> ClusterView:
        """The membership as CLUSTER SLOTS, SHARDS, NODES and INFO show it."""
        m = self.deps.ownership.membership
        nodes = [self._row(p, p is m.myself) for p in m.nodes.values()]
        return ClusterView(rows(nodes), self.deps.ownership.ok, m.current_epoch, True)

    def _row(self, peer: Peer, myself: bool) -> NodeRow:
        m = self.deps.ownership.membership
        address = peer.address
        return NodeRow(
            id=peer.hex_id,
            host=address.host,
            resp_port=self.port if myself else address.resp_port,
            bus_port=address.bus_port,
            primary=peer.is_primary,
            primary_id=peer.primary_id.hex(),
            pfail=bool(peer.flags & PFAIL),
            fail=bool(peer.flags & FAIL),
            config_epoch=peer.config_epoch,
            ranges=tuple(m.slot_ranges(peer.id)),
            myself=myself,
            repl_offset=peer.repl_offset,
            proxy=peer.is_proxy,
        )

    def resp_endpoint(self, node_id: str) -> str | None:
        """``host:port`` of a node's RESP listener; None when it has none."""
        m = self.deps.ownership.membership
        try:
            peer = m.nodes.get(bytes.fromhex(node_id))
        except ValueError:
            return None
        if peer is None:
            return None
        if peer is m.myself:
            return f"{peer.address.host}:{self.port}"
        port = peer.address.resp_port
        return f"{peer.address.host}:{port}" if port else None

    def primary_endpoint(self) -> tuple[str, int] | None:
        """This replica's primary's RESP endpoint (INFO replication)."""
        primary = self.deps.ownership.membership.my_primary()
        if primary is None:
            return None
        return primary.address.host, primary.address.resp_port

    def tracking_clients(self) -> int:
        """Connections with CLIENT TRACKING on."""
        return sum(1 for c in self.connections.values() if c.tracking_on)

    def client_list(self) -> str:
        """CLIENT LIST: one line per connection."""
        return "".join(c.describe() + "\n" for c in self.connections.values())

    def counters(self) -> Mapping[str, Any]:
        """The listener's own figures, for the node's stats."""
        return {
            "resp.connections": len(self.connections),
            "resp.connections_received": self.connections_received,
            "resp.commands": self.commands_processed,
        }
