"""Cluster mode for one node: the membership state machine wired to the bus, the clock and disk.

The state machine decides; this module only moves its messages, feeds it
time, persists its configuration when it changes, and reacts to its events.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from slotcache.contract import SLOT_COUNT

from . import node_file
from .bus import BusService, BusTransport
from .config import ServerConfig
from .membership.failover import FailoverMode
from .membership.machine import (
    ClusterError,
    Envelope,
    Membership,
    NodeFailed,
    RoleChanged,
    SlotsLost,
    StateChanged,
)
from .membership.model import Address, MembershipConfig, Peer
from .membership.snapshot import restore, snapshot
from .wire import bus_pb2, bus_pb2_grpc

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


def load_membership(config: ServerConfig, now: int) -> Membership:
    """Restore the node from its data directory, or create a fresh one with a new id."""
    address = Address(config.public_host, config.port, config.cluster_bus_port)
    saved = node_file.load(node_file.node_file(config.data_dir))
    if saved is not None:
        return restore(saved, membership_config(config), address, now)
    node_id = random.SystemRandom().randbytes(20)
    return Membership(membership_config(config), Peer(id=node_id, address=address), now)


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
    address = Address(config.public_host, config.port, config.cluster_bus_port)
    saved = node_file.load(node_file.node_file(config.data_dir))
    node_id = bytes.fromhex(saved["myself"]) if saved is not None else None
    membership = Membership(
        membership_config(config),
        Peer(id=node_id or random.SystemRandom().randbytes(20), address=address),
        now,
    )
    identity = snapshot(membership) if saved is None else None
    membership.add_slots(range(SLOT_COUNT))
    # Ok at once and for good: the writable and rejoin delays of a cluster node
    # give peers time to reconfigure it, and a cluster of one has no peers.
    # It is never ticked, so nothing changes this again.
    membership.ok = True
    return membership, identity


class ClusterRuntime:
    """Runs one node's membership: bus server, transport, ticks, persistence, events."""

    def __init__(
        self,
        config: ServerConfig,
        on_slots_lost: Callable[[Iterable[int]], None],
        on_role_changed: Callable[[bytes], None],
        clock: Callable[[], int] = monotonic_ms,
    ) -> None:
        self.config = config
        self.clock = clock
        self.membership = load_membership(config, clock())
        self._on_slots_lost = on_slots_lost
        self._on_role_changed = on_role_changed
        self._link_age_ms: Callable[[], int] = lambda: 0
        self._path = node_file.node_file(config.data_dir)
        timeout_s = self.membership.config.resend_ms / 1000
        self.transport = BusTransport(self._receive_reply, timeout_s)
        self._server: grpc.aio.Server | None = None

    async def start(self, add_services: Callable[[grpc.aio.Server], None] | None = None) -> int:
        """Listen on the bus port and say hello to every node we remember; return the port.

        ``add_services`` registers other node-to-node services (replication)
        on the bus port, which is the one peers are allowed to reach.
        """
        self.persist(force=True)
        server = grpc.aio.server(
            options=[("grpc.so_reuseport", 0), ("grpc.max_send_message_length", -1)]
        )
        bus_pb2_grpc.add_BusServicer_to_server(BusService(self._handle, self.transport), server)
        if add_services is not None:
            add_services(server)
        # Lets operators and clusterctl check that peers can reach this port.
        bus_health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(bus_health, server)
        bind = f"{self.config.host}:{self.config.cluster_bus_port}"
        try:
            port = server.add_insecure_port(bind)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on bus address {bind}: {exc}") from exc
        await server.start()
        await bus_health.set("", health_pb2.HealthCheckResponse.SERVING)
        self._server = server
        self.transport.send_all(self.membership.announce(self.clock()))
        return port

    async def stop(self) -> None:
        """Stop the bus; the node file already holds the latest configuration."""
        self.persist()
        await self.transport.close()
        if self._server is not None:
            await self._server.stop(0)

    # ---- driving the state machine --------------------------------------------

    def attach_replication(self, offset: Callable[[], int], link_age_ms: Callable[[], int]) -> None:
        """Let elections see where this node's data stands and how fresh it is."""
        self.membership.replication_offset = offset
        self._link_age_ms = link_age_ms

    def tick(self) -> None:
        """Advance the state machine; called by the node's cron every 100 ms."""
        self.membership.elections.primary_link_age_ms = self._link_age_ms()
        self.transport.send_all(self.membership.tick(self.clock()))
        self._after_change()

    def _handle(
        self, message: bus_pb2.BusMessage
    ) -> tuple[bus_pb2.BusMessage | None, list[Envelope]]:
        result = self.membership.receive(message, self.clock())
        self._after_change()
        return result

    def _receive_reply(self, message: bus_pb2.BusMessage) -> list[Envelope]:
        _, out = self._handle(message)
        return out

    def _after_change(self) -> None:
        for event in self.membership.drain_events():
            if isinstance(event, SlotsLost):
                log.warning(
                    "lost %d slots to %s; dropping their keys",
                    len(event.slots),
                    event.new_owner.hex(),
                )
                self._on_slots_lost(event.slots)
            elif isinstance(event, NodeFailed):
                log.warning("node %s marked FAIL", event.node.hex())
            elif isinstance(event, StateChanged):
                log.warning("cluster state is now %s", "ok" if event.ok else "fail")
            elif isinstance(event, RoleChanged):
                if event.primary:
                    log.warning("now a replica of %s", event.primary.hex())
                else:
                    log.warning("now a primary")
                self._on_role_changed(event.primary)
        self.persist()

    def persist(self, force: bool = False) -> None:
        """Save the configuration if it changed (epochs and votes must be on disk before use)."""
        if force or self.membership.config_dirty:
            node_file.save(self._path, snapshot(self.membership))
            self.membership.config_dirty = False

    # ---- operator commands ---------------------------------------------------

    async def meet(self, host: str, bus_port: int) -> Peer:
        """Introduce a node; on any failure nothing is added."""
        target = f"{host}:{bus_port}"
        message = self.membership.meet_message(self.clock())
        try:
            reply = await self.transport.exchange(target, message)
        except grpc.aio.AioRpcError as exc:
            raise ConnectionError(
                f"cannot reach the bus of {target}: {exc.code().name}: {exc.details()}"
            ) from None
        peer = self.membership.complete_meet(reply, self.clock())
        self._after_change()
        return peer

    def add_slots(self, slots: Iterable[int]) -> None:
        """Claim unassigned slots (raises ClusterError and changes nothing on conflict)."""
        self.membership.add_slots(slots)
        self._after_change()

    def claim_slots(self, slots: Iterable[int]) -> int:
        """Take slots under a new config epoch and tell every node at once; return the epoch."""
        self.membership.claim_slots(slots, self.clock())
        self._after_change()
        self.transport.send_all(self.membership.announce(self.clock()))
        return self.membership.myself.config_epoch

    def apply_claim(self, node_id: bytes, epoch: int, slots: Iterable[int]) -> None:
        """Adopt another node's claim now (the source of a finished migration does)."""
        self.membership.apply_claim(node_id, epoch, slots, self.clock())
        self._after_change()

    def set_config_epoch(self, epoch: int) -> None:
        """Set a fresh node's config epoch."""
        self.membership.set_config_epoch(epoch)
        self._after_change()

    def replicate(self, primary_id: bytes) -> None:
        """Become a replica of a known primary."""
        self.membership.replicate(primary_id, self.clock())
        self._after_change()

    def forget(self, node_id: bytes) -> None:
        """Remove a node from this node's view."""
        self.membership.forget(node_id, self.clock())
        self._after_change()

    def failover(self, mode: FailoverMode) -> None:
        """Start a manual failover on this replica."""
        out = self.membership.manual_failover(mode, self.clock())
        self._after_change()
        self.transport.send_all(out)


__all__ = ["ClusterError", "ClusterRuntime", "load_membership"]
