"""Cluster mode for one node: the membership runtime on the real bus, clock and disk.

:class:`ClusterRuntime` is :class:`MembershipRuntime` with gRPC as its
transport, the node file in the data directory as its store and the
monotonic clock; it also serves the bus port and turns membership events
into what the node does about them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from . import node_file
from .bus import BusService, BusTransport
from .config import ServerConfig
from .membership.machine import ClusterError, Membership
from .membership.model import PRIMARY, PROXY, Address, MembershipConfig, Peer, new_node_id
from .membership.snapshot import restore, snapshot
from .membership.step import Event, NodeFailed, RoleChanged, SlotsLost, StateChanged
from .membership_runtime import MembershipRuntime
from .security.node_auth import NodeAuth
from .security.tls import add_port

log = logging.getLogger(__name__)


def monotonic_ms() -> int:
    """The membership clock: milliseconds that never jump."""
    return time.monotonic_ns() // 1_000_000


def membership_config(config: ServerConfig) -> MembershipConfig:
    """The state machine's settings from the server's."""
    return MembershipConfig(
        node_timeout_ms=config.node_timeout_ms,
        require_full_coverage=config.require_full_coverage,
        allow_reads_when_down=config.allow_reads_when_down,
    )


def _myself(config: ServerConfig, node_id: bytes | None) -> Peer:
    """This node where it listens now, with a fresh id unless ``node_id`` is kept."""
    address = Address(
        config.public_host, config.client_port, config.cluster_bus_port, config.announced_resp_port
    )
    return Peer(id=node_id or new_node_id(random.SystemRandom().randbytes), address=address)


def load_membership(config: ServerConfig, now: int) -> Membership:
    """Restore the node from its data directory, or create a fresh one with a new id.

    Raises ClusterError when ``--proxy`` asks for a role the node file rules out.
    """
    saved = node_file.load(node_file.node_file(config.data_dir))
    myself = _myself(config, None)
    if saved is not None:
        membership = restore(saved, membership_config(config), myself.address, now)
    else:
        membership = Membership(membership_config(config), myself, now)
    take_role(membership, config.proxy)
    return membership


def take_role(membership: Membership, proxy: bool) -> None:
    """Make this node a proxy, or (started without ``--proxy``) an empty primary again.

    A node that owns slots or replicates a primary holds data the cluster
    counts on; turning it into a proxy would drop that silently.
    """
    me = membership.myself
    if proxy:
        owned = membership.slots.count(me.id)
        if owned or me.is_replica:
            held = f"owns {owned} slots" if owned else "is a replica"
            raise ClusterError(
                f"this node {held} according to its node file, and a proxy never does: "
                "start the proxy with an empty --data-dir, or this node without --proxy"
            )
        me.flags = PROXY
    elif me.is_proxy:
        me.flags = PRIMARY


def standalone_membership(
    config: ServerConfig, now: int
) -> tuple[Membership, dict[str, Any] | None]:
    """A standalone node: a cluster of one that owns every slot and is always ok.

    The request path then needs no mode checks: it asks the same questions
    of this membership as of a real cluster's. Only the node's id is kept
    from its node file, which is otherwise left as it is (a cluster node
    started once without cluster mode must not lose its cluster). Returns
    the membership and, when there was no node file yet, the identity to
    save, without the slots, so that a later cluster start begins empty.
    """
    saved = node_file.load(node_file.node_file(config.data_dir))
    node_id = bytes.fromhex(saved["myself"]) if saved is not None else None
    membership = Membership(membership_config(config), _myself(config, node_id), now)
    identity = snapshot(membership) if saved is None else None
    membership.stand_alone()
    return membership, identity


class ClusterRuntime(MembershipRuntime):
    """Runs one node's membership: bus server, gRPC transport, node file, events."""

    def __init__(
        self,
        config: ServerConfig,
        membership: Membership,
        node_auth: NodeAuth,
        on_slots_lost: Callable[[Iterable[int]], None],
        on_role_changed: Callable[[bytes], None],
        clock: Callable[[], int] = monotonic_ms,
    ) -> None:
        self.config = config
        self.node_auth = node_auth
        self._on_slots_lost = on_slots_lost
        self._on_role_changed = on_role_changed
        # A reply counts until node_timeout, as in Redis: with the resend
        # interval as the deadline, a peer slower than node_timeout/5 to answer
        # (a 400 ms round trip with node_timeout 1000 ms) never counted as alive.
        self._bus = BusTransport(self.on_reply, membership.config.node_timeout_ms / 1000, node_auth)
        store = node_file.NodeFile(node_file.node_file(config.data_dir))
        super().__init__(membership, self._bus, store, clock, self._dispatch)
        self._server: grpc.aio.Server | None = None

    @property
    def bus(self) -> BusTransport:
        """The bus transport; its traffic counters feed the metrics."""
        return self._bus

    async def start(
        self,
        add_services: Callable[[grpc.aio.Server], None] | None = None,
        credentials: grpc.ServerCredentials | None = None,
    ) -> int:
        """Listen on the bus port and say hello to every node we remember; return the port.

        ``add_services`` registers other node-to-node services (replication)
        on the bus port, which is the one peers are allowed to reach. With
        ``credentials`` (``--tls-cluster``) the port speaks mutual TLS only.
        """
        self.save()
        server = grpc.aio.server(
            options=[("grpc.so_reuseport", 0), ("grpc.max_send_message_length", -1)]
        )
        bus = BusService(self.handle, self._bus.traffic, self.node_auth)
        server.add_generic_rpc_handlers((bus.handler(),))
        if add_services is not None:
            add_services(server)
        # Lets operators and clusterctl check that peers can reach this port.
        bus_health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(bus_health, server)
        bind = f"{self.config.host}:{self.config.cluster_bus_port}"
        try:
            port = add_port(server, bind, credentials)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on bus address {bind}: {exc}") from exc
        await server.start()
        await bus_health.set("", health_pb2.HealthCheckResponse.SERVING)
        self._server = server
        self.announce()
        return port

    async def stop(self) -> None:
        """Stop the bus; every step that changed the configuration has saved it already."""
        await self._bus.close()
        if self._server is not None:
            await self._server.stop(0)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, SlotsLost):
            log.warning(
                "lost %d slots to %s; dropping their keys", len(event.slots), event.new_owner.hex()
            )
            self._on_slots_lost(event.slots)
        elif isinstance(event, NodeFailed):
            log.warning("node %s marked FAIL", event.node.hex())
        elif isinstance(event, StateChanged):
            # Recovering is good news; only losing the cluster deserves a warning.
            level = logging.INFO if event.ok else logging.WARNING
            log.log(level, "cluster state is now %s", "ok" if event.ok else "fail")
        elif isinstance(event, RoleChanged):
            if event.primary:
                log.warning("now a replica of %s", event.primary.hex())
            else:
                log.warning("now a primary")
            self._on_role_changed(event.primary)

    async def leave(self, budget_s: float) -> int:
        """A stopping proxy asks every node to forget it; returns how many answered in time.

        Sent directly and awaited, unlike the fire-and-forget messages of a
        step: the process is about to exit, and a node that never got the
        LEAVE forgets the proxy later anyway (see membership/proxies.py).
        """
        step = self.membership.leave(self.clock(), self.inputs())
        sends = [self._bus.exchange(e.dest.bus, e.message, e.node) for e in step.messages]
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*sends, return_exceptions=True), budget_s
            )
        except TimeoutError:
            return 0
        return sum(1 for r in results if not isinstance(r, BaseException))

    async def meet(self, host: str, bus_port: int) -> Peer:
        """Introduce a node; on any failure nothing is added."""
        target = f"{host}:{bus_port}"
        try:
            reply = await self._bus.exchange(target, self.meet_message())
        except grpc.aio.AioRpcError as exc:
            raise ConnectionError(
                f"cannot reach the bus of {target}: {exc.code().name}: {exc.details()}"
            ) from None
        except DecodeError:
            raise ConnectionError(f"{target} does not answer as a bus port") from None
        return self.complete_meet(reply)


__all__ = ["ClusterError", "ClusterRuntime", "load_membership", "monotonic_ms", "take_role"]
