"""The source side of a slot migration: snapshots, the writes that follow, and the handoff.

While the slots are being copied the source keeps serving them; only during
the handoff does it hold writes to them (for the few milliseconds the target
needs to apply the tail and claim the slots). The hold ends when the source
learns of the claim (the target's last message, applied here as the new
ownership) or when the migration ends without one (the source then simply
carries on as the owner).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from ..holds import WriteHolds
from ..keyspace import Keyspace, RemovalCause
from ..membership.machine import ClusterError
from ..membership.slot_table import expand
from ..migration.pacing import Pacer
from ..migration.progress import MigrationRecord
from ..migration.target import HANDOFF_TIMEOUT_S
from ..replication.ops import EncodedOpRecorder
from ..replication.snapshots import send_snapshots
from ..wire import migration_pb2 as pb
from ..wire import replication_pb2 as rpb

log = logging.getLogger(__name__)

MAX_QUEUED_MESSAGES = 64
# Writes are held from the handoff until the target's claim arrives. A target that
# sends nothing for this long (it hung, or its claim is lost) gets no more: the
# migration ends and the source serves the writes again. The target gives up on a
# handoff after HANDOFF_TIMEOUT_S, counted from before the hold began, so by then it
# will not claim the slots.
HOLD_TIMEOUT_S = 2 * HANDOFF_TIMEOUT_S
# How long a cancelled migration's stream may take to deliver its end.
CANCEL_GRACE_S = 0.5


class SlotRecorder(EncodedOpRecorder):
    """Records only the changes to keys of the migrating slots (encoded)."""

    def __init__(self, slots: frozenset[int], sink: Callable[[bytes], None]) -> None:
        super().__init__(sink)
        self.slots = slots

    def key_set(self, slot: int, key: bytes, value: bytes, deadline: int) -> None:
        """A value was written."""
        if slot in self.slots:
            super().key_set(slot, key, value, deadline)

    def key_removed(self, slot: int, key: bytes, cause: RemovalCause) -> None:
        """A key was removed."""
        if slot in self.slots:
            super().key_removed(slot, key, cause)

    def deadline_set(self, slot: int, key: bytes, deadline: int) -> None:
        """A key's TTL changed."""
        if slot in self.slots:
            super().deadline_set(slot, key, deadline)


@dataclass(eq=False)
class OutgoingMigration:
    """One migration this node is the source of."""

    record: MigrationRecord
    slots: frozenset[int]
    queue: asyncio.Queue[pb.MigrationEvent] = field(default_factory=asyncio.Queue)
    pending: list[rpb.ReplOp] = field(default_factory=list)
    pending_offset: int = 0
    offset: int = 0
    paused: bool = False
    # The task serving the stream, to end it when the target stops reading.
    task: asyncio.Task[Any] | None = None

    def record_op(self, op: rpb.ReplOp) -> None:
        """Number a change to the slots and keep it for the next flush.

        Nothing is recorded once the handoff has begun: writes are held, and
        the target, which has everything up to the paused offset, may claim
        the slots at any moment. What still changes here then is not news for
        it: keys expiring (the target has their deadlines), evictions (the
        target's copy is still the last value written), and above all this
        node dropping the slots when it hears of the claim, by gossip possibly
        before the claim's own message. Sent on, those deletes would empty
        the new owner.
        """
        if self.paused:
            return
        if not self.pending:
            self.pending_offset = self.offset
        self.pending.append(op)
        self.offset += 1

    def flush(self) -> None:
        """Queue the changes gathered since the last flush as one message."""
        if self.pending:
            ops = rpb.ReplOps(offset=self.pending_offset, ops=self.pending)
            self.queue.put_nowait(pb.MigrationEvent(ops=ops))
            self.pending = []


class MigrationSources:
    """Every migration out of this node, and the slots whose writes are held."""

    def __init__(
        self,
        keyspace: Keyspace,
        owns: Callable[[frozenset[int]], str],
        apply_claim: Callable[[bytes, int, frozenset[int]], None],
        records: dict[str, MigrationRecord],
        holds: WriteHolds,
        pacer: Callable[[], Pacer] | None = None,
    ) -> None:
        self.keyspace = keyspace
        # The node's write holds: a handoff holds its slots there, and releasing
        # them wakes the writes waiting on them.
        self.holds = holds
        # A new Pacer per migration: how much of the loop the copy may take.
        self._pacer = pacer
        # Returns "" when this node may give away the slots, else why not.
        self._owns = owns
        # Makes the target the owner of the slots at the claim's config epoch.
        self._apply_claim = apply_claim
        self._records = records
        self._active: dict[str, OutgoingMigration] = {}
        self._flush_scheduled = False

    def cancel(self, migration_id: str) -> bool:
        """End an outgoing migration: the source keeps the slots and resumes writes.

        Refused (False) once the handoff has begun: the target has, or is about
        to have, everything, and may claim the slots at any moment; resuming
        writes here could lose them. Only the target can cancel then (or the
        hold times out).
        """
        out = self._active.get(migration_id)
        if out is None or out.paused:
            return False
        out.record.error = "cancelled"
        out.queue.put_nowait(pb.MigrationEvent())
        # The end event waits behind what is queued; a target that stopped reading
        # (hung, or cut off without a reset) would never let it through.
        asyncio.get_running_loop().call_later(CANCEL_GRACE_S, self._force_end, out)
        return True

    def _force_end(self, out: OutgoingMigration) -> None:
        """End a cancelled migration whose stream is stuck (its cleanup runs as usual)."""
        if self._active.get(out.record.migration_id) is out and out.task is not None:
            log.warning(
                "migration %s: the target stopped reading; ending the stream",
                out.record.migration_id,
            )
            out.task.cancel()

    async def serve(
        self, requests: AsyncIterator[pb.MigrationRequest]
    ) -> AsyncIterator[pb.MigrationEvent]:
        """The source's half of one Migrate stream."""
        first = await anext(requests, None)
        if first is None:
            return  # the target went away before naming the slots
        start = first.start
        try:
            slots = frozenset(expand(start.slots))
        except ValueError as exc:
            yield pb.MigrationEvent(refused=pb.MigrationRefused(reason=str(exc)))
            return
        refusal = self._refusal(slots)
        if refusal:
            yield pb.MigrationEvent(refused=pb.MigrationRefused(reason=refusal))
            return
        record = MigrationRecord(
            migration_id=start.migration_id,
            side="source",
            source_id="",
            target_id=bytes(start.target).hex(),
            slots=sorted(slots),
        )
        self._records[record.migration_id] = record
        out = OutgoingMigration(record, slots, task=asyncio.current_task())
        self._active[record.migration_id] = out
        recorder = SlotRecorder(slots, lambda op: self._record(out, rpb.ReplOp.FromString(op)))
        self.keyspace.add_listener(recorder)
        snapshots = asyncio.create_task(self._send_snapshots(out))
        control = asyncio.create_task(self._read_control(out, requests))
        try:
            while True:
                event = await out.queue.get()
                if not event.WhichOneof("kind"):
                    return
                yield event
        finally:
            snapshots.cancel()
            control.cancel()
            self.keyspace.remove_listener(recorder)
            self._active.pop(record.migration_id, None)
            self.holds.release(slots)
            if record.state not in ("done",):
                record.fail(record.error or "the migration stream ended before the handoff")
            log.info("migration %s (source) ended: %s", record.migration_id, record.state)

    def _refusal(self, slots: frozenset[int]) -> str:
        if not slots:
            return "no slots named"
        busy = {s for m in self._active.values() for s in m.slots} & slots
        if busy:
            return f"slots {sorted(busy)[:5]} are already migrating"
        return self._owns(slots)

    def _record(self, out: OutgoingMigration, op: rpb.ReplOp) -> None:
        out.record_op(op)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        for out in self._active.values():
            out.flush()

    async def _send_snapshots(self, out: OutgoingMigration) -> None:
        record = out.record
        record.state = "snapshot"

        def emit(chunk: rpb.SlotSnapshots) -> None:
            out.flush()
            out.queue.put_nowait(pb.MigrationEvent(snapshots=chunk))
            record.slots_done += len(chunk.slots)
            for snapshot in chunk.slots:
                record.keys += len(snapshot.entries)
                record.bytes += sum(len(e.key) + len(e.value) for e in snapshot.entries)

        pacer = self._pacer() if self._pacer is not None else None
        await send_snapshots(
            self.keyspace,
            sorted(out.slots),
            emit,
            lambda: out.queue.qsize() > MAX_QUEUED_MESSAGES,
            pacer.pause_after if pacer is not None else None,
        )
        if pacer is not None and pacer.paused_s:
            log.info(
                "migration %s: paused %.2fs for client traffic", record.migration_id, pacer.paused_s
            )
        out.flush()
        out.queue.put_nowait(
            pb.MigrationEvent(snapshot_done=pb.MigrationSnapshotDone(offset=out.offset))
        )
        record.state = "streaming"

    def _claim_refusal(self, out: OutgoingMigration, claim: pb.MigrationClaimed) -> str:
        """Adopt a claim; or why not: it must name this migration's target, a known node.

        A claim that cannot be adopted must end the migration: left pending,
        it would hold the slots' writes for as long as the stream stayed open.
        """
        target = bytes(claim.target)
        if target.hex() != out.record.target_id:
            return f"it names {target.hex()}, not the target {out.record.target_id}"
        try:
            self._apply_claim(target, claim.config_epoch, out.slots)
        except ClusterError as exc:
            return str(exc)
        return ""

    async def _read_control(
        self, out: OutgoingMigration, requests: AsyncIterator[pb.MigrationRequest]
    ) -> None:
        record = out.record
        while True:
            try:
                if out.paused:
                    message = await asyncio.wait_for(anext(requests), HOLD_TIMEOUT_S)
                else:
                    message = await anext(requests)
            except StopAsyncIteration:
                break
            except TimeoutError:
                record.error = f"the target did not take the slots within {HOLD_TIMEOUT_S:g}s"
                break
            kind = message.WhichOneof("kind")
            if kind == "handoff":
                # Hold writes to the slots; what was written so far goes out now.
                self.holds.hold(out.slots)
                out.paused = True
                record.state = "handoff"
                out.flush()
                out.queue.put_nowait(
                    pb.MigrationEvent(paused=pb.MigrationPaused(offset=out.offset))
                )
            elif kind == "claimed":
                claim = message.claimed
                refusal = self._claim_refusal(out, claim)
                if refusal:
                    # Ending the stream releases the held writes; the source keeps the slots.
                    record.error = f"the claim was refused: {refusal}"
                    break
                record.state = "done"
                record.finished = time.monotonic()
                out.queue.put_nowait(pb.MigrationEvent())
                return
        out.queue.put_nowait(pb.MigrationEvent())  # the target went away
