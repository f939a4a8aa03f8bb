"""The target side of a slot migration: pull, apply, ask for the handoff, claim.

The target keeps the keys it receives in its own keyspace (they are
replicated to its replicas like any write), but does not serve the slots
until it claims them. A migration that fails or is cancelled before the
claim drops every key it brought in, so the target is left clean and the
source, which never stopped owning the slots, carries on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

import grpc

from slotcache.contract import SLOT_COUNT, to_ranges

from ..keyspace import Keyspace
from ..membership.slot_table import flatten
from ..migration.pacing import Pacer
from ..migration.progress import MigrationRecord
from ..peer_channels import open_peer_channel
from ..replication.snapshots import apply_ops, load_snapshots
from ..security.member_rpc import NotAMember, check_answer, method_path
from ..security.node_auth import NodeAuth
from ..wire import migration_pb2 as pb
from ..wire import migration_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

MIGRATE = method_path(pb.DESCRIPTOR.services_by_name["Migration"].full_name, "Migrate")

# The source holds writes during the handoff; if the tail does not arrive in
# this long, the target gives up so the source can carry on.
HANDOFF_TIMEOUT_S = 5.0
# The source streams without pause until the handoff (it waits only for this node to
# read). A source that sends nothing for this long is hung or gone without closing
# the stream (a source that abandons a stalled stream cannot close it: grpc/grpc#29248).
SOURCE_SILENCE_S = 10.0


class MigrationFailed(Exception):
    """The migration did not complete; the source keeps the slots."""


class IncomingMigration:
    """Moves ``slots`` from the node at ``source_bus`` to this one."""

    def __init__(
        self,
        keyspace: Keyspace,
        record: MigrationRecord,
        my_id: bytes,
        source_bus: str,
        claim: Callable[[list[int]], int],
        pacer: Pacer | None = None,
        auth: NodeAuth | None = None,
    ) -> None:
        self.keyspace = keyspace
        self._auth = auth or NodeAuth()
        # Paces the loading while this node also serves clients (see pacing.py).
        self._pace = pacer.pause_after if pacer is not None else None
        self.record = record
        self.my_id = my_id
        self.source_bus = source_bus
        # Takes the slots under a new config epoch and returns that epoch.
        self._claim = claim
        self._outbox: asyncio.Queue[pb.MigrationRequest | None] = asyncio.Queue()
        self._claimed = False
        self._handoff_deadline = 0.0

    async def run(self) -> None:
        """Run the migration to its end; on any failure leave this node clean."""
        record = self.record
        try:
            await self._migrate()
        except asyncio.CancelledError:
            self._clean("cancelled")
            raise
        except grpc.aio.AioRpcError as exc:
            self._clean(f"the stream to the source broke: {exc.code().name}: {exc.details()}")
        except (MigrationFailed, NotAMember) as exc:
            self._clean(str(exc))
        except Exception as exc:
            log.exception("migration %s failed", record.migration_id)
            self._clean(f"internal error: {exc}")

    def _clean(self, reason: str) -> None:
        """Drop what was brought in (unless the slots are ours now) and record why."""
        if self._claimed:
            # The slots are ours and the source has been told: the migration is done,
            # however the stream ended afterwards.
            log.warning("migration %s: after the claim: %s", self.record.migration_id, reason)
            return
        for slot in self.record.slots:
            self.keyspace.clear_slot(slot)
        self.record.fail(reason)
        log.warning("migration %s failed: %s", self.record.migration_id, reason)

    async def _requests(self) -> AsyncIterator[pb.MigrationRequest]:
        while True:
            message = await self._outbox.get()
            if message is None:
                return
            yield message

    async def _migrate(self) -> None:
        record = self.record
        slots = record.slots
        for slot in slots:
            self.keyspace.clear_slot(slot)  # leftovers of an earlier, failed attempt
        start = pb.MigrationStart(
            target=self.my_id, slots=flatten(to_ranges(slots)), migration_id=record.migration_id
        )
        self._outbox.put_nowait(pb.MigrationRequest(start=start))
        async with open_peer_channel(
            self.source_bus, [("grpc.max_receive_message_length", -1)]
        ) as channel:
            sent = self._auth.call_metadata(MIGRATE, audience=bytes.fromhex(record.source_id))
            call = pb_grpc.MigrationStub(channel).Migrate(self._requests(), metadata=sent)
            await check_answer(self._auth, call, sent, MIGRATE, self.source_bus)
            loaded = bytearray(SLOT_COUNT)
            while True:
                try:
                    event = await asyncio.wait_for(call.read(), SOURCE_SILENCE_S)
                except TimeoutError:
                    raise MigrationFailed(
                        f"the source sent nothing for {SOURCE_SILENCE_S:g}s"
                    ) from None
                if event is grpc.aio.EOF:
                    break
                assert isinstance(event, pb.MigrationEvent)
                kind = event.WhichOneof("kind")
                if kind == "refused":
                    raise MigrationFailed(f"the source refused: {event.refused.reason}")
                if kind == "snapshots":
                    keys, size = await load_snapshots(
                        self.keyspace, event.snapshots, loaded, self._pace
                    )
                    record.slots_done += len(event.snapshots.slots)
                    record.keys += keys
                    record.bytes += size
                elif kind == "ops":
                    if self._claimed:
                        # The slots are ours: the source's stream has nothing more to
                        # say about them (it records nothing after the pause).
                        log.warning(
                            "migration %s: ignored %d operations sent after the claim",
                            record.migration_id,
                            len(event.ops.ops),
                        )
                        continue
                    offset = apply_ops(self.keyspace, event.ops, loaded)
                    self._outbox.put_nowait(pb.MigrationRequest(ack=pb.MigrationAck(offset=offset)))
                elif kind == "snapshot_done":
                    record.state = "handoff"
                    self._outbox.put_nowait(pb.MigrationRequest(handoff=pb.MigrationHandoff()))
                    self._handoff_deadline = time.monotonic() + HANDOFF_TIMEOUT_S
                elif kind == "paused":
                    # Everything up to the paused offset has been applied: the
                    # stream is ordered. The slots are ours to take.
                    if time.monotonic() > self._handoff_deadline:
                        raise MigrationFailed("the handoff took too long")
                    epoch = self._claim(slots)
                    self._claimed = True
                    claimed = pb.MigrationClaimed(target=self.my_id, config_epoch=epoch)
                    self._outbox.put_nowait(pb.MigrationRequest(claimed=claimed))
                    self._outbox.put_nowait(None)
                    record.state = "done"
                    record.finished = time.monotonic()
            if not self._claimed:
                raise MigrationFailed("the source ended the stream before the handoff")
