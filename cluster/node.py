"""One slotcache node: the gRPC server, its services and its background cron.

Everything that touches the network or the clock lives here; the services
and the keyspace it wires together do not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from collections.abc import Callable, Iterable
from importlib.metadata import version
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from slotcache.v1 import admin_pb2, admin_pb2_grpc, cache_pb2, cache_pb2_grpc

from . import node_file, peer_channels
from .cluster_runtime import (
    ClusterError,
    ClusterRuntime,
    load_membership,
    monotonic_ms,
    standalone_membership,
)
from .config import ServerConfig
from .executor import Executor, Limits
from .forwarding import Forwarder
from .handoff import hand_off, live_replicas, owns_slots
from .holds import WriteHolds
from .keyspace import Keyspace
from .keyspace.store import wall_clock_ms
from .membership.model import role_name
from .migration.manager import Migrations, MigrationService
from .migration.pacing import Pacer
from .observability import telemetry
from .ownership import Ownership
from .persistence.format import SnapshotMeta
from .persistence.node_snapshots import NodeSnapshots
from .replication.manager import NodeReplication
from .replication.service import ReplicationService
from .resp.gate import Gate
from .resp.listener import RespDeps, RespListener
from .security.access import Access
from .security.acl import AclError
from .security.admin_guard import guard_admin
from .security.cluster_secret import SecretFileError
from .security.limits import InputLimits
from .security.node_auth import NodeAuth, node_auth_for
from .security.tls import NodeTls, TlsError, add_port
from .security.tls_context import server_context
from .services.admin import AdminService
from .services.cache import CacheService
from .services.durability import Durability
from .tracking.hub import TrackingHub, TrackingLimits
from .tracking.service import Tracking
from .wire import migration_pb2_grpc, replication_pb2_grpc

log = logging.getLogger(__name__)

CACHE_SERVICE = cache_pb2.DESCRIPTOR.services_by_name["Cache"].full_name
SERVICE_NAMES = (CACHE_SERVICE, admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name)


SHUTDOWN_SETTLE_S = 0.2
# How long a node that owns no slots (a replica, or a primary that handed its
# slots over) waits for calls to finish: it only redirects and serves
# replica reads, which clients retry elsewhere, while a client's idle
# Pipeline stream would otherwise hold it for the whole grace period.
UNOWNED_DRAIN_S = 0.5
LOOP_WATCH_PERIOD_S = 0.01
# How long a stopping proxy waits for the nodes to acknowledge its LEAVE.
PROXY_LEAVE_S = 2.0
# How long a starting replica waits to catch up with its primary before it
# binds its ports anyway (a primary that streams without pause, or that accepts
# connections but does not answer). Heartbeats come every 100 ms.
RESYNC_WAIT_S = 0.5


class StartupError(RuntimeError):
    """The node could not start (for example, its port is taken)."""


class Node:
    """A single node serving the Cache, Admin, health and reflection services."""

    def __init__(self, config: ServerConfig, clock_ms: Callable[[], int] = wall_clock_ms) -> None:
        self.config = config
        self.keyspace = Keyspace(
            maxmemory=config.maxmemory,
            policy=config.maxmemory_policy,
            samples=config.maxmemory_samples,
            sampler=config.sampler,
            clock_ms=clock_ms,
        )
        # Latency, errors, slow log, access log, hot keys (see observability/).
        self.telemetry = telemetry.Telemetry(config)
        self.recorder = self.telemetry.recorder
        self.executor = Executor(
            self.keyspace, Limits(config.max_key_bytes, config.max_value_bytes)
        )
        self.health = health.aio.HealthServicer()
        self.runtime: ClusterRuntime | None = None
        self.replication: NodeReplication | None = None
        self.migrations: Migrations | None = None
        # The node file a standalone node writes once it listens (None: keep the one there).
        self._identity: dict[str, Any] | None = None
        self.holds = WriteHolds(
            lambda: membership.pause_set and membership.writes_paused(monotonic_ms())
        )
        if config.cluster_enabled:
            try:
                membership = load_membership(config, monotonic_ms())
            except ClusterError as exc:
                raise StartupError(str(exc)) from None
            self.node_auth = self._node_auth(membership.id)
            self.runtime = ClusterRuntime(
                config, membership, self.node_auth, self.drop_slots, self._role_changed
            )
            self.replication = NodeReplication(
                self.keyspace,
                config.repl_backlog_bytes,
                membership.id,
                self._primary_bus,
                self.node_auth,
                self._primary_id,
            )
            recorder = self.recorder
            self.migrations = Migrations(
                self.keyspace,
                self.runtime,
                self.holds,
                config.migration_cpu_percent / 100,
                lambda: recorder.ops_total,
                self.node_auth,
            )
            self.runtime.attach_replication(
                lambda: self.replication.offset if self.replication else 0,
                lambda: self.replication.link_age_ms() if self.replication else 0,
            )
        else:
            membership, self._identity = standalone_membership(config, monotonic_ms())
            self.node_auth = self._node_auth(membership.id)
        self.durability = Durability(
            self.replication,
            config.min_replicas,
            config.min_replicas_timeout_ms / 1000,
            lambda: live_replicas(membership),
        )
        self.ownership = Ownership(membership, self.holds, self.durability.serves_replica_reads)
        self.forwarder = Forwarder(config.max_message_bytes, self.node_auth)
        self.limits = InputLimits.from_config(config)
        # ---- users and permissions (see docs/security.md) ----
        self.access = Access(config.acl_file, config.protected_mode, self.node_auth)
        self.tracking = Tracking(
            TrackingHub(
                self.keyspace,
                TrackingLimits(
                    config.tracking_table_max_keys,
                    config.tracking_max_keys_per_subscriber,
                    config.tracking_queue_max_keys,
                ),
            ),
            self.ownership,
            self.executor.limits,
            self.limits,
        )
        recorder = self.recorder
        self.snapshots = NodeSnapshots(
            self.keyspace,
            config.data_dir,
            config.snapshot,
            self._snapshot_meta,
            Pacer(config.migration_cpu_percent / 100, lambda: recorder.ops_total).pause_after,
        )
        self.port = config.client_port
        self.bus_port = 0
        self.sampler_cycles = 0
        self.sampler_overruns = 0
        self.loop_lag_max_ms = 0
        self.loop_lag_ms = 0
        self.sampler_stale_permille = 0
        self.promotions = 0
        self.loop_lag_cpu_max_ms = 0
        self._started_at = time.monotonic()
        self._server: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._cluster_cron: asyncio.Task[None] | None = None
        self._proxy_ready: bool | None = None
        # Set by SIGTERM/SIGINT (see cluster.main) or by the Admin Shutdown RPC.
        self.shutdown_requested = asyncio.Event()
        # Shutdown(reset=true): delete the node file once stopped.
        self.reset_requested = False
        # The Redis-protocol listener (--resp-port), when on.
        # The Redis-protocol listeners (--resp-port, --resp-tls-port), when on.
        self.resp_listeners: list[RespListener] = []

    def _node_auth(self, node_id: bytes) -> NodeAuth:
        """Who counts as a cluster member: secret holders, node certificates, or anyone."""
        try:
            return node_auth_for(self.config.cluster_secret_file, self.config.tls_cluster, node_id)
        except SecretFileError as exc:
            raise StartupError(str(exc)) from None

    async def start(self) -> None:
        """Load the snapshot, bind the ports, start serving and start the cron.

        A node that cannot start leaves no state behind: a node file written
        for a node that never served would give the next start its id (and
        its epochs), and a data directory made for it would stay empty.
        """
        data_dir = self.config.data_dir
        path = node_file.node_file(data_dir)
        made_dir, new_file = not data_dir.exists(), not path.exists()
        try:
            await self._start()
        except StartupError:
            if new_file:
                path.unlink(missing_ok=True)
            if made_dir:
                with contextlib.suppress(OSError):
                    data_dir.rmdir()
            raise

    async def _start(self) -> None:
        try:
            self.access.load()
        except AclError as exc:
            raise StartupError(str(exc)) from None
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self._resume_from(self.snapshots.load())
        if self._identity is not None:
            # Standalone nodes keep their id too, for when they later join a cluster.
            node_file.save(node_file.node_file(self.config.data_dir), self._identity)
        try:
            tls = NodeTls.load(self.config.tls)
        except TlsError as exc:
            raise StartupError(str(exc)) from exc
        peer_channels.use_tls(tls.watcher if self.config.tls_cluster else None)
        if self.replication is not None:
            # Replication needs only the data and the peer channels, so a
            # restarted replica resumes and catches up before the rest of the
            # start: the writes its primary holds for a replica then wait for
            # the resync alone. The steps below yield in between, so that it
            # keeps acknowledging new ones meanwhile.
            self._apply_role()
            await self.replication.resync(RESYNC_WAIT_S)
        limit = self.config.max_message_bytes
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.max_concurrent_streams", self.config.max_streams_per_connection),
                # Two nodes must never share a port silently.
                ("grpc.so_reuseport", 0),
            ]
        )
        cache_pb2_grpc.add_CacheServicer_to_server(self.cache_service(), server)
        admin_pb2_grpc.add_AdminServicer_to_server(
            guard_admin(self.admin_service(), self.access), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        await asyncio.sleep(0)
        self._listen(server, tls)
        if self.runtime is not None:
            replication_service = ReplicationService(
                lambda: self.replication.primary if self.replication else None, self.node_auth
            )
            assert self.migrations is not None
            migration_service = MigrationService(self.migrations, self.node_auth)

            def add_bus_services(bus: grpc.aio.Server) -> None:
                replication_pb2_grpc.add_ReplicationServicer_to_server(replication_service, bus)
                migration_pb2_grpc.add_MigrationServicer_to_server(migration_service, bus)

            try:
                self.bus_port = await self.runtime.start(add_bus_services, tls.bus)
            except OSError as exc:
                raise StartupError(str(exc)) from exc
            self._cluster_cron = asyncio.create_task(self._run_cluster_cron(), name="cluster-cron")
            self._tasks.append(self._cluster_cron)
        await asyncio.sleep(0)
        self.tracking.start()
        await asyncio.sleep(0)
        try:
            self.telemetry.start(self)
        except OSError as exc:
            raise StartupError(f"cannot serve metrics: {exc}") from exc
        await asyncio.sleep(0)
        # ---- Redis protocol (RESP) listener ----
        await self._start_resp(tls)
        # ---- end of the RESP block ----
        await server.start()
        self._server = server
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.config.proxy:
            await self._report_proxy_readiness()
        self._tasks.append(asyncio.create_task(self._run_cron(), name="slotcache-cron"))
        self._tasks.append(asyncio.create_task(self._watch_loop(), name="loop-watch"))
        self.snapshots.start()

    async def _start_resp(self, tls: NodeTls) -> None:
        """Open the plaintext and TLS RESP ports that are on (one listener each)."""
        config = self.config
        ports: list[tuple[int, ssl.SSLContext | None]] = []
        if config.resp_port:
            ports.append((config.resp_port, None))
        if config.resp_tls_port:
            assert tls.watcher is not None, "checked by the configuration"
            ports.append(
                (config.resp_tls_port, server_context(tls.watcher, config.tls_auth_clients))
            )
        for port, context in ports:
            listener = self.resp_listener()
            self.resp_listeners.append(listener)
            try:
                await listener.start(config.host, port, context)
            except (OSError, ssl.SSLError) as exc:
                where = f"{config.host}:{port}"
                raise StartupError(f"cannot listen for RESP on {where}: {exc}") from exc

    def _listen(self, server: grpc.aio.Server, tls: NodeTls) -> None:
        """Bind the plaintext and TLS client ports that are on; ``port`` is the announced one."""
        ports = {self.config.port: None, self.config.tls_port: tls.client}
        for port, credentials in ports.items():
            if not port:
                continue
            address = f"{self.config.host}:{port}"
            try:
                bound = add_port(server, address, credentials)
            except RuntimeError as exc:
                raise StartupError(f"cannot listen on {address}: {exc}") from exc
            if bound == 0:
                raise StartupError(f"cannot listen on {address}")
        self.port = self.config.client_port

    def _resume_from(self, meta: SnapshotMeta | None) -> None:
        """Continue the snapshot's replication history, so replicas resync partially.

        A replica's data at the snapshot's offset is a prefix of its
        primary's history wherever it was taken. A primary's is only when
        the snapshot is final (taken after it stopped taking writes): from an
        older one it would reuse offsets for writes its replicas never saw.
        """
        if meta is None or not meta.replid or self.replication is None:
            return
        if self.ownership.membership.myself.primary_id or meta.final:
            self.replication.backlog.reset(meta.replid, meta.offset)
            log.info("resuming replication history %s at offset %d", meta.replid, meta.offset)

    def _snapshot_meta(self, final: bool) -> SnapshotMeta:
        """The END record of a snapshot taken now: where the data stands in its history."""
        replid, offset = "", 0
        replication = self.replication
        if replication is not None:
            replica = replication.replica
            # In the middle of a full sync the data is at no point of any history.
            if replica is None or (replica.synced and not replica.syncing):
                replid, offset = replication.backlog.replid, replication.backlog.offset
        return SnapshotMeta(
            replid=replid,
            offset=offset,
            keys=self.keyspace.key_count,
            final=final,
            saved_at_ms=wall_clock_ms(),
            node_id=self.ownership.membership.myself.hex_id,
        )

    def cache_service(self) -> CacheService:
        """The Cache servicer over this node's state (the one place it is wired)."""
        return CacheService(
            self.executor,
            self.ownership,
            self.forwarder,
            self.durability,
            self.holds,
            self.tracking,
            self.recorder,
            self.telemetry.tracer,
            self.access,
            limits=self.limits,
        )

    def resp_listener(self) -> RespListener:
        """The RESP listener over this node's state (the one place it is wired)."""
        config = self.config
        return RespListener(
            RespDeps(
                executor=self.executor,
                ownership=self.ownership,
                holds=self.holds,
                durability=self.durability,
                service=self.cache_service(),
                tracking=self.tracking,
                recorder=self.recorder,
                server_info=self.server_info,
                stats=self.stats,
                cluster_enabled=self.runtime is not None,
                routing=config.resp_routing,
                max_request_bytes=config.max_message_bytes,
                gate=Gate(self.access),
            )
        )

    def admin_service(self) -> AdminService:
        """The Admin servicer over this node's state (the one place it is wired)."""
        return AdminService(
            self.server_info,
            self.stats,
            self.ownership,
            self.runtime,
            self.keyspace,
            self.migrations,
            self.request_shutdown,
            self.recorder,
            self.access,
        )

    def request_shutdown(self, reset: bool = False) -> None:
        """Ask whoever runs the node (cluster.main) to stop it as on SIGTERM."""
        self.reset_requested = self.reset_requested or reset
        self.shutdown_requested.set()

    async def stop(self, grace: float | None = None) -> None:
        """Stop gracefully: hand off the slots, report NOT_SERVING, drain, save the snapshot.

        The handoff and the drain share the grace period; the snapshot is
        written after it, once nothing changes the keyspace any more.
        """
        loop = asyncio.get_running_loop()
        grace = self.config.shutdown_grace_s if grace is None else grace
        deadline = loop.time() + grace
        if self.config.shutdown_failover and self.runtime is not None and self.replication:
            await hand_off(self.runtime.membership, self.replication.primary, grace, self.node_auth)
        if self.config.proxy:
            await self._leave(min(grace, PROXY_LEAVE_S))
        await self.health.enter_graceful_shutdown()
        # Calls already read but not yet dispatched are cancelled by grpc's stop()
        # (grpc/grpc#41785); a short pause lets them reach their handlers first,
        # and lets health checkers see NOT_SERVING before the port closes.
        await asyncio.sleep(SHUTDOWN_SETTLE_S)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Subscribe streams never end on their own; end them so they do not hold the grace.
        await self.tracking.stop()
        for listener in self.resp_listeners:
            await listener.stop()
        if self._server is not None:
            drain = max(deadline - loop.time(), SHUTDOWN_SETTLE_S)
            if self.runtime is not None and not owns_slots(self.runtime.membership):
                drain = min(drain, UNOWNED_DRAIN_S)
            log.info("draining calls for up to %.1fs", drain)
            await self._server.stop(drain)
        if self.migrations is not None:
            await self.migrations.stop()
        # None of these is needed once calls are drained; done while replication
        # still runs, they add nothing to the time this node's shard is a copy
        # short. (A replica's stream has a channel of its own, not the bus's.)
        await self.forwarder.close()
        self.telemetry.stop()
        if self.runtime is not None:
            await self.runtime.stop()
        # A reset node must come back empty, with a new id.
        await self.snapshots.stop(keep=not self.reset_requested)
        if self.replication is not None:
            await self.replication.stop()
            log.info("replication stopped")
        if self.reset_requested:
            # After the runtime's last save: started again, the node is new and alone.
            node_file.node_file(self.config.data_dir).unlink(missing_ok=True)

    async def _leave(self, budget_s: float) -> None:
        """Ask the cluster to forget this proxy, after its last probe.

        The membership cron stops first: a proxy probes with MEET, and one
        sent after the LEAVE would add it back.
        """
        assert self.runtime is not None, "a proxy runs in cluster mode"
        if self._cluster_cron is not None:
            self._cluster_cron.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cluster_cron
        peers = sum(1 for _ in self.runtime.membership.peers())
        answered = await self.runtime.leave(budget_s)
        log.info("left the cluster: %d of %d nodes acknowledged", answered, peers)

    async def _run_cron(self) -> None:
        """Run background duties at the sampler's frequency, keeping a steady period."""
        period = self.config.sampler.period_s
        loop = asyncio.get_running_loop()
        next_run = loop.time()
        while True:
            # Replicas never expire keys themselves: their primary sends the deletes.
            if self.keyspace.expire_keys:
                cycle = self.keyspace.run_expiry_cycle()
                self.sampler_cycles += 1
                self.sampler_overruns += cycle.out_of_time
                if cycle.sampled:
                    self.sampler_stale_permille = cycle.expired * 1000 // cycle.sampled
            next_run += period
            delay = next_run - loop.time()
            if delay < 0:
                next_run = loop.time()
                delay = 0
            await asyncio.sleep(delay)

    async def _watch_loop(self) -> None:
        """Measure how late the event loop wakes up: the stall every request suffers.

        Long synchronous steps (a huge slot snapshot, a big batch) show here
        first; the Info RPC reports the worst since start. On a busy host the
        lag also counts time the OS did not run the process at all, so the
        part of it this thread spent working (its CPU time in the period) is
        kept apart: that is the stall the node's own code caused.
        """
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + LOOP_WATCH_PERIOD_S
            cpu = time.thread_time()
            await asyncio.sleep(LOOP_WATCH_PERIOD_S)
            lag_ms = int((loop.time() - expected) * 1000)
            self.loop_lag_ms = lag_ms
            if lag_ms > self.loop_lag_max_ms:
                self.loop_lag_max_ms = lag_ms
            lag_cpu_ms = min(lag_ms, int((time.thread_time() - cpu) * 1000))
            if lag_cpu_ms > self.loop_lag_cpu_max_ms:
                self.loop_lag_cpu_max_ms = lag_cpu_ms

    async def _run_cluster_cron(self) -> None:
        """Drive the membership state machine at its tick rate."""
        assert self.runtime is not None
        period = self.runtime.membership.config.tick_ms / 1000
        while True:
            await asyncio.sleep(period)
            try:
                self.runtime.tick()
                # A manual failover's write pause may have timed out.
                self.holds.changed()
                if self.replication is not None:
                    self.replication.heartbeat(time.time_ns() // 1_000_000)
                if self.config.proxy:
                    await self._report_proxy_readiness()
            except Exception:
                log.exception("cluster tick failed")

    async def _report_proxy_readiness(self) -> None:
        """A proxy's Cache service is SERVING only while it knows an owner for every slot.

        A proxy owns nothing: until it has joined and learned the slot map it
        can only refuse, so a readiness probe of the Cache service (the proxy
        Deployment's) keeps clients away from it. The overall status ("")
        stays SERVING, so a liveness probe does not restart a proxy that
        waits to be met, or rides out a cluster that is down.
        """
        ready = self.ownership.ok
        if ready != self._proxy_ready:
            self._proxy_ready = ready
            status = health_pb2.HealthCheckResponse
            await self.health.set(CACHE_SERVICE, status.SERVING if ready else status.NOT_SERVING)

    def drop_slots(self, slots: Iterable[int]) -> None:
        """Delete the keys of slots this node no longer owns, as Redis does.

        A primary failed over keeps them: it now replicates the node that took
        the slots, whose history its keys are a prefix of, so replication
        continues from its offset (partial sync) or replaces them (full sync).
        Deleting them would force a full sync, and would stream the deletes to
        the new owner, which may still be applying this node's stream.
        """
        slots = tuple(slots)
        if not self.ownership.membership.myself.primary_id:
            for slot in slots:
                self.keyspace.clear_slot(slot)
        # Near caches may also hold keys of these slots that were absent here.
        self.tracking.slots_lost(slots)

    def _primary_bus(self) -> str | None:
        primary = self.ownership.membership.my_primary()
        return primary.address.bus if primary is not None else None

    def _primary_id(self) -> bytes:
        primary = self.ownership.membership.my_primary()
        return primary.id if primary is not None else b""

    def _role_changed(self, primary: bytes) -> None:
        # In the same loop step as the membership change, before any request
        # can see the new role (see NodeReplication.become_primary).
        if self.ownership.membership.myself.is_primary:
            self.promotions += 1
        self._apply_role()
        # A write held by a manual failover's pause is routed again now.
        self.holds.changed()

    def _apply_role(self) -> None:
        """Make replication match the role the membership gives this node."""
        if self.replication is None:
            return
        if self.ownership.membership.myself.primary_id:
            self.replication.become_replica()
        else:
            self.replication.become_primary()

    def server_info(self) -> dict[str, str]:
        """Descriptive fields for the Info RPC."""
        return {
            "version": version("slotcache"),
            "address": f"{self.config.host}:{self.port}",
            "pid": str(os.getpid()),
            "uptime_s": f"{time.monotonic() - self._started_at:.0f}",
            "maxmemory_policy": self.config.maxmemory_policy.value,
            "data_dir": str(self.config.data_dir),
            "node_id": self.ownership.membership.myself.hex_id,
            "cluster_enabled": "yes" if self.runtime is not None else "no",
            "role": role_name(self.ownership.membership.myself.flags),
        }

    def stats(self) -> dict[str, int]:
        """Counters and gauges for the Info RPC."""
        ks = self.keyspace
        out = {f"ops.{name}": n for name, n in self.recorder.op_counts().items()}
        out.update(
            {
                "keys": ks.key_count,
                "keys.with_ttl": ks.ttl_key_count(),
                "hits": ks.stats.hits,
                "misses": ks.stats.misses,
                "expired.lazy": ks.stats.expired_lazy,
                "expired.active": ks.stats.expired_active,
                "evicted": ks.stats.evicted,
                "memory.used": ks.used_memory,
                "memory.max": ks.maxmemory,
                "sampler.cycles": self.sampler_cycles,
                "sampler.overruns": self.sampler_overruns,
                "loop.lag_max_ms": self.loop_lag_max_ms,
                "loop.lag_cpu_max_ms": self.loop_lag_cpu_max_ms,
                "snapshot.saves": self.snapshots.saves,
                "snapshot.last_save_ms": int(self.snapshots.last_save_s * 1000),
                "snapshot.last_save_cpu_ms": int(self.snapshots.last_save_cpu_s * 1000),
                "snapshot.last_load_ms": int(self.snapshots.last_load_s * 1000),
                "snapshot.last_load_cpu_ms": int(self.snapshots.last_load_cpu_s * 1000),
                "snapshot.loaded_keys": self.snapshots.loaded_keys,
                "sampler.last_stale_permille": self.sampler_stale_permille,
                # Node-to-node calls refused as not a member's (see security/node_auth.py).
                "cluster.calls_refused": self.node_auth.refused_total,
            }
        )
        out.update(self.telemetry.stats(self))
        out.update(self.tracking.counters())
        out.update(self.access.counters())
        for listener in self.resp_listeners:
            for name, value in listener.counters().items():
                out[name] = out.get(name, 0) + value
        replication = self.replication
        if replication is not None:
            out["repl.offset"] = replication.offset
            primary, replica = replication.primary, replication.replica
            if primary is not None:
                out["repl.replicas"] = len(primary.links)
                out["repl.replicas_in_sync"] = primary.in_sync_replicas()
                out["repl.full_syncs_served"] = primary.full_syncs
                out["repl.partial_syncs_served"] = primary.partial_syncs
                out["repl.backlog_bytes"] = replication.backlog.size_bytes
            if replica is not None:
                out["repl.lag_ops"] = replica.lag_ops
                out["repl.lag_ms"] = replica.lag_ms()
                out["repl.syncing"] = int(replica.syncing)
                out["repl.full_syncs"] = replica.full_syncs
        return out
