"""The Admin servicer: operator RPCs used by clusterctl."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias

import grpc

from slotcache.contract import key_slot
from slotcache.v1 import admin_pb2 as pb
from slotcache.v1 import admin_pb2_grpc as pb_grpc
from slotcache.v1.cache_pb2 import SlotRange

from ..cluster_runtime import ClusterRuntime, monotonic_ms
from ..executor import CommandError, invalid
from ..keyspace import Keyspace
from ..membership.failover import FailoverMode
from ..membership.machine import ClusterError
from ..membership.slot_table import expand, flatten
from ..migration.manager import Migrations
from ..observability.calls import CallRecorder
from ..ownership import Ownership
from ..security.access import Access
from ..security.admin_guard import AclRpcs
from ..services.status import abort

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
_FAILOVER_MODES = {
    pb.FAILOVER_MODE_GRACEFUL: FailoverMode.GRACEFUL,
    pb.FAILOVER_MODE_FORCE: FailoverMode.FORCE,
    pb.FAILOVER_MODE_TAKEOVER: FailoverMode.TAKEOVER,
}


class AdminService(AclRpcs, pb_grpc.AdminServicer):
    """Reports what the node is and applies operator changes to its cluster membership.

    Reads go through callbacks and views, so the service holds no state of
    its own and always reports live figures.
    """

    def __init__(
        self,
        server_info: Callable[[], Mapping[str, str]],
        stats: Callable[[], Mapping[str, int]],
        ownership: Ownership,
        runtime: ClusterRuntime | None,
        keyspace: Keyspace,
        migrations: Migrations | None = None,
        shutdown: Callable[[bool], None] | None = None,
        recorder: CallRecorder | None = None,
        access: Access | None = None,
    ) -> None:
        self._server_info = server_info
        self._stats = stats
        self._ownership = ownership
        self._runtime = runtime
        self._keyspace = keyspace
        self._migrations = migrations
        # Starts the node's graceful stop (the argument: also forget the cluster).
        self._shutdown = shutdown
        # The slow log, hot keys and per-slot operation counts.
        self._recorder = recorder
        # Users: the ACL file to reload and the ACL log (AclRpcs serves both).
        self.access = access or Access(None, protected_mode=False)

    async def Info(self, request: pb.InfoRequest, context: Context) -> pb.InfoReply:
        return pb.InfoReply(server=self._server_info(), stats=self._stats())

    async def ClusterState(
        self, request: pb.ClusterStateRequest, context: Context
    ) -> pb.ClusterStateReply:
        return self._ownership.cluster_state(monotonic_ms(), self._runtime is not None)

    async def Meet(self, request: pb.MeetRequest, context: Context) -> pb.MeetReply:
        runtime = await self._cluster(context)
        try:
            if not request.host or not 0 < request.bus_port < 65536:
                raise invalid("meet needs a host and a bus port in 1..65535")
            try:
                peer = await runtime.meet(request.host, request.bus_port)
            except ConnectionError as exc:
                raise CommandError(grpc.StatusCode.UNAVAILABLE, str(exc)) from None
            except ClusterError as exc:
                raise CommandError(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from None
        except CommandError as exc:
            await abort(context, exc)
        return pb.MeetReply(node_id=peer.hex_id)

    async def AddSlots(self, request: pb.AddSlotsRequest, context: Context) -> pb.AddSlotsReply:
        runtime = await self._cluster(context)
        try:
            slots = _slots(request.ranges)
            try:
                runtime.add_slots(slots)
            except ClusterError as exc:
                raise CommandError(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from None
        except CommandError as exc:
            await abort(context, exc)
        return pb.AddSlotsReply()

    async def ClaimSlots(
        self, request: pb.ClaimSlotsRequest, context: Context
    ) -> pb.ClaimSlotsReply:
        runtime = await self._cluster(context)
        try:
            slots = _slots(request.ranges)
            try:
                epoch = runtime.claim_slots(slots)
            except ClusterError as exc:
                raise CommandError(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from None
        except CommandError as exc:
            await abort(context, exc)
        return pb.ClaimSlotsReply(config_epoch=epoch)

    async def SetConfigEpoch(
        self, request: pb.SetConfigEpochRequest, context: Context
    ) -> pb.SetConfigEpochReply:
        runtime = await self._cluster(context)
        try:
            runtime.set_config_epoch(request.config_epoch)
        except ClusterError as exc:
            await abort(context, CommandError(grpc.StatusCode.FAILED_PRECONDITION, str(exc)))
        return pb.SetConfigEpochReply()

    async def Replicate(self, request: pb.ReplicateRequest, context: Context) -> pb.ReplicateReply:
        runtime = await self._cluster(context)
        try:
            primary = _node_id(request.primary_id)
            try:
                runtime.replicate(primary)
            except ClusterError as exc:
                raise CommandError(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from None
        except CommandError as exc:
            await abort(context, exc)
        return pb.ReplicateReply()

    async def Failover(self, request: pb.FailoverRequest, context: Context) -> pb.FailoverReply:
        runtime = await self._cluster(context)
        mode = _FAILOVER_MODES.get(request.mode)
        try:
            if mode is None:
                raise invalid(f"unknown failover mode {request.mode}")
            try:
                runtime.failover(mode)
            except ClusterError as exc:
                raise CommandError(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from None
        except CommandError as exc:
            await abort(context, exc)
        membership = runtime.membership
        if request.wait_ms:
            await wait_until(lambda: membership.myself.is_primary, request.wait_ms / 1000)
        return pb.FailoverReply(promoted=membership.myself.is_primary)

    async def SlotStats(self, request: pb.SlotStatsRequest, context: Context) -> pb.SlotStatsReply:
        keyspace = self._keyspace
        if request.ranges:
            try:
                slots: Iterable[int] = _slots(request.ranges)
            except CommandError as exc:
                await abort(context, exc)
                raise
        else:
            slots = keyspace.nonempty_slots()
        reply = pb.SlotStatsReply()
        slot_ops = self._recorder.slot_ops if self._recorder is not None else None
        for slot in slots:
            reply.slots.add(
                slot=slot,
                keys=keyspace.slot_key_count(slot),
                bytes=keyspace.slot_memory(slot),
                ops=slot_ops[slot] if slot_ops is not None else 0,
            )
        return reply

    async def SlowLog(self, request: pb.SlowLogRequest, context: Context) -> pb.SlowLogReply:
        recorder = await self._telemetry(context)
        slowlog = recorder.slowlog
        reply = pb.SlowLogReply(
            slower_than_us=slowlog.threshold_us, max_len=slowlog.max_len, total=slowlog.total
        )
        for e in slowlog.latest(request.count):
            reply.entries.add(
                id=e.id,
                time_ms=e.time_ms,
                latency_us=e.latency_us,
                op=e.op,
                key=e.key,
                keys=e.keys,
                slot=e.slot,
                peer=e.peer,
                status=e.status,
            )
        if request.reset:
            slowlog.reset()
        return reply

    async def HotKeys(self, request: pb.HotKeysRequest, context: Context) -> pb.HotKeysReply:
        hotkeys = (await self._telemetry(context)).hotkeys
        if hotkeys is None:
            return pb.HotKeysReply(sample=0)
        reply = pb.HotKeysReply(sample=hotkeys.sample, sampled=hotkeys.sampled)
        for hot in hotkeys.top(request.count or 10):
            reply.keys.add(key=hot.key, slot=key_slot(hot.key), count=hot.count, error=hot.error)
        if request.reset:
            hotkeys.reset()
        return reply

    async def _telemetry(self, context: Context) -> CallRecorder:
        if self._recorder is None:
            await abort(
                context,
                CommandError(grpc.StatusCode.UNIMPLEMENTED, "this node keeps no call telemetry"),
            )
            raise AssertionError("unreachable")
        return self._recorder

    async def ImportSlots(
        self, request: pb.ImportSlotsRequest, context: Context
    ) -> pb.ImportSlotsReply:
        migrations = await self._migration_manager(context)
        try:
            slots = _slots(request.ranges)
            source = _node_id(request.source_id)
            try:
                migration_id = migrations.start_import(source, slots)
            except ClusterError as exc:
                raise CommandError(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from None
        except CommandError as exc:
            await abort(context, exc)
        return pb.ImportSlotsReply(migration_id=migration_id)

    async def MigrationStatus(
        self, request: pb.MigrationStatusRequest, context: Context
    ) -> pb.MigrationStatusReply:
        migrations = await self._migration_manager(context)
        return pb.MigrationStatusReply(migrations=migrations.status(request.migration_id))

    async def CancelMigration(
        self, request: pb.CancelMigrationRequest, context: Context
    ) -> pb.CancelMigrationReply:
        migrations = await self._migration_manager(context)
        return pb.CancelMigrationReply(cancelled=migrations.cancel(request.migration_id))

    async def Forget(self, request: pb.ForgetRequest, context: Context) -> pb.ForgetReply:
        runtime = await self._cluster(context)
        try:
            node = _node_id(request.node_id)
            try:
                runtime.forget(node)
            except ClusterError as exc:
                raise CommandError(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from None
        except CommandError as exc:
            await abort(context, exc)
        return pb.ForgetReply()

    async def Shutdown(self, request: pb.ShutdownRequest, context: Context) -> pb.ShutdownReply:
        if self._shutdown is None:
            await abort(
                context,
                CommandError(grpc.StatusCode.UNIMPLEMENTED, "this node cannot be stopped remotely"),
            )
            raise AssertionError("unreachable")
        # The stop begins with a settle pause, so this reply goes out before the drain.
        self._shutdown(request.reset)
        return pb.ShutdownReply()

    async def _migration_manager(self, context: Context) -> Migrations:
        await self._cluster(context)
        if self._migrations is None:
            await abort(
                context,
                CommandError(grpc.StatusCode.UNIMPLEMENTED, "this node cannot migrate slots"),
            )
            raise AssertionError("unreachable")
        return self._migrations

    async def _cluster(self, context: Context) -> ClusterRuntime:
        if self._runtime is None:
            await abort(
                context,
                CommandError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "cluster mode is disabled on this node; start it with --cluster-enabled yes",
                ),
            )
            raise AssertionError("unreachable")
        return self._runtime


def _slots(ranges: Iterable[SlotRange]) -> list[int]:
    """Expand and validate requested slot ranges."""
    try:
        slots = list(expand(flatten((r.start, r.end) for r in ranges)))
    except ValueError as exc:
        raise invalid(str(exc)) from None
    if not slots:
        raise invalid("no slots given")
    return slots


def _node_id(text: str) -> bytes:
    """A node id given as 40 hex digits."""
    try:
        node = bytes.fromhex(text)
    except ValueError:
        node = b""
    if len(node) != 20:
        raise invalid(f"{text!r} is not a node id (40 hex digits)")
    return node


async def wait_until(predicate: Callable[[], bool], limit_s: float, step_s: float = 0.005) -> bool:
    """Poll ``predicate`` until it holds or ``limit_s`` passes (an operator awaits a failover)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not predicate():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(step_s)
    return True
