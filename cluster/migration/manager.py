"""The migrations one node takes part in, as source or target, and the Migration servicer."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import grpc

from slotcache.v1 import admin_pb2

from ..cluster_runtime import ClusterRuntime
from ..holds import WriteHolds
from ..keyspace import Keyspace
from ..membership.commands import require_slot_owner
from ..membership.machine import ClusterError
from ..migration.pacing import Pacer
from ..migration.progress import MigrationRecord
from ..migration.source import MigrationSources
from ..migration.target import MIGRATE, IncomingMigration
from ..security.member_rpc import admit_member, answer_as_member
from ..security.node_auth import NodeAuth
from ..wire import migration_pb2, migration_pb2_grpc

# Finished migrations kept for MigrationStatus.
HISTORY = 256


class Migrations:
    """Starts, follows and cancels this node's migrations."""

    def __init__(
        self,
        keyspace: Keyspace,
        runtime: ClusterRuntime,
        holds: WriteHolds,
        cpu_share: float = 1.0,
        activity: Callable[[], int] | None = None,
        auth: NodeAuth | None = None,
    ) -> None:
        self.keyspace = keyspace
        self.auth = auth or NodeAuth()
        self.runtime = runtime
        self.records: dict[str, MigrationRecord] = {}
        # A new Pacer per migration and side (see pacing.py).
        self._pacer: Callable[[], Pacer] = lambda: Pacer(cpu_share, activity)
        self.sources = MigrationSources(
            keyspace,
            self._can_give,
            runtime.apply_claim,
            self.records,
            holds,
            self._pacer,
        )
        self._incoming: dict[str, tuple[IncomingMigration, asyncio.Task[None]]] = {}

    # ---- as the target ------------------------------------------------------------

    def start_import(self, source_id: bytes, slots: Iterable[int]) -> str:
        """Begin moving ``slots`` from ``source_id`` to this node; return the migration id."""
        m = self.runtime.membership
        wanted = sorted(set(slots))
        require_slot_owner(m.myself)
        source = m.nodes.get(source_id)
        if source is None or source is m.myself:
            raise ClusterError(f"{source_id.hex()} is not another known node")
        if source.is_proxy:
            raise ClusterError(f"{source_id.hex()} is a proxy: it owns no slots to migrate")
        if not source.is_primary:
            raise ClusterError(f"{source_id.hex()} is a replica; migrate from its primary")
        not_theirs = [s for s in wanted if m.slots.owner(s) != source_id]
        if not_theirs:
            raise ClusterError(
                f"{len(not_theirs)} of the slots (first: {not_theirs[0]}) are not owned by "
                f"{source_id.hex()}"
            )
        busy = [s for s in wanted if self._importing(s)]
        if busy:
            raise ClusterError(f"slot {busy[0]} is already being imported")
        migration_id = secrets.token_hex(6)
        record = MigrationRecord(
            migration_id=migration_id,
            side="target",
            source_id=source_id.hex(),
            target_id=m.myself.hex_id,
            slots=wanted,
        )
        self._remember(record)
        incoming = IncomingMigration(
            self.keyspace,
            record,
            m.id,
            source.address.bus,
            self.runtime.claim_slots,
            self._pacer(),
            self.auth,
        )
        task = asyncio.get_running_loop().create_task(incoming.run())
        self._incoming[migration_id] = (incoming, task)
        task.add_done_callback(lambda _t: self._incoming.pop(migration_id, None))
        return migration_id

    def _importing(self, slot: int) -> bool:
        return any(slot in inc.record.slots for inc, _ in self._incoming.values())

    # ---- as the source ---------------------------------------------------------------

    def _can_give(self, slots: frozenset[int]) -> str:
        m = self.runtime.membership
        if not m.myself.is_primary:
            return "this node is not a primary"
        foreign = [s for s in slots if m.slots.owner(s) != m.id]
        if foreign:
            return f"this node does not own slot {min(foreign)}"
        return ""

    # ---- operators ------------------------------------------------------------------

    def cancel(self, migration_id: str) -> bool:
        """Stop a migration on whichever side this node is; False if it is not running.

        The source refuses once the handoff has begun (see MigrationSources.cancel).
        """
        incoming = self._incoming.get(migration_id)
        if incoming is not None:
            incoming[1].cancel()
            return True
        return self.sources.cancel(migration_id)

    def status(self, migration_id: str = "") -> list[admin_pb2.MigrationProgress]:
        """Progress of one migration, or of all this node remembers."""
        if migration_id:
            record = self.records.get(migration_id)
            return [record.to_proto()] if record is not None else []
        return [r.to_proto() for r in self.records.values()]

    def _remember(self, record: MigrationRecord) -> None:
        self.records[record.migration_id] = record
        if len(self.records) > HISTORY:
            for old in [r for r in self.records.values() if not r.active][: -HISTORY // 2]:
                del self.records[old.migration_id]

    async def stop(self) -> None:
        """Cancel every running import (sources end with their streams)."""
        tasks = [task for _, task in self._incoming.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class MigrationService(migration_pb2_grpc.MigrationServicer):
    """The source's end of Migrate streams from members, on the bus port."""

    def __init__(self, migrations: Migrations, auth: NodeAuth | None = None) -> None:
        self._migrations = migrations
        self._auth = auth or NodeAuth()

    async def Migrate(
        self,
        request_iterator: AsyncIterator[migration_pb2.MigrationRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[migration_pb2.MigrationEvent]:
        """Serve one migration out of this node."""
        await admit_member(self._auth, context, MIGRATE)
        await answer_as_member(self._auth, context, MIGRATE)
        async for event in self._migrations.sources.serve(request_iterator):
            yield event
