"""Per-slot snapshots and operation streams: what full syncs and slot migrations share.

A sender copies one slot at a time (one step of the event loop, so the copy
is consistent) and queues it in order with the live operations; a receiver
loads snapshots in short slices and skips operations for slots whose
snapshot has not arrived yet, because that snapshot already includes them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from slotcache.contract import key_slot

from ..keyspace import Keyspace
from ..replication.ops import apply_op, op_key
from ..wire import replication_pb2 as pb

# A snapshot message carries whole slots until it holds about this many bytes.
SNAPSHOT_CHUNK_BYTES = 64 * 1024
# Also bounds the slots one loop step copies: with few keys, 16384 slots would fit in one
# chunk and stall the node for tens of milliseconds per full sync or migration asked for.
SNAPSHOT_CHUNK_SLOTS = 1024
# Work done between two yields to the event loop while loading snapshots.
APPLY_SLICE_S = 0.001


async def send_snapshots(
    keyspace: Keyspace,
    slots: Sequence[int],
    emit: Callable[[pb.SlotSnapshots], None],
    backlogged: Callable[[], bool],
    pause_after: Callable[[float], float] | None = None,
) -> None:
    """Copy ``slots`` one at a time and hand them to ``emit`` in chunks.

    ``emit`` is called in the same loop step as the copies it carries, so it
    can first flush the operations gathered before them: the order on the
    wire then matches the order of changes in the keyspace. ``pause_after``
    (seconds a chunk took -> seconds to pause) lets a migration give the
    CPU back to clients.
    """
    chunk = pb.SlotSnapshots()
    size = 0
    last = len(slots) - 1
    began = time.monotonic()
    for i, slot in enumerate(slots):
        snapshot = chunk.slots.add(slot=slot)
        for key, value, deadline in keyspace.slot_items(slot):
            snapshot.entries.add(key=key, value=value, deadline_ms=deadline)
            size += len(key) + len(value) + 16
        if size >= SNAPSHOT_CHUNK_BYTES or len(chunk.slots) >= SNAPSHOT_CHUNK_SLOTS or i == last:
            emit(chunk)
            chunk, size = pb.SlotSnapshots(), 0
            pause = pause_after(time.monotonic() - began) if pause_after else 0.0
            while backlogged():
                await asyncio.sleep(0.001)
            await asyncio.sleep(pause)
            began = time.monotonic()


async def load_snapshots(
    keyspace: Keyspace,
    chunk: pb.SlotSnapshots,
    loaded: bytearray,
    pause_after: Callable[[float], float] | None = None,
) -> tuple[int, int]:
    """Replace each slot of ``chunk`` with its snapshot; return (keys, bytes) loaded.

    ``pause_after`` (seconds a slice took -> seconds to pause) lets a
    migration give the CPU back to clients between slices.
    """
    began = time.monotonic()
    deadline = began + APPLY_SLICE_S
    keys = size = 0
    for snapshot in chunk.slots:
        keyspace.clear_slot(snapshot.slot)
        for entry in snapshot.entries:
            keyspace.set_with_deadline(entry.key, entry.value, entry.deadline_ms)
            keys += 1
            size += len(entry.key) + len(entry.value)
        loaded[snapshot.slot] = 1
        now = time.monotonic()
        if now >= deadline:
            await asyncio.sleep(pause_after(now - began) if pause_after else 0)
            began = time.monotonic()
            deadline = began + APPLY_SLICE_S
    return keys, size


def apply_ops(keyspace: Keyspace, ops: pb.ReplOps, loaded: bytearray | None) -> int:
    """Apply a batch of operations; return the offset after the last one.

    With ``loaded``, an operation for a slot whose snapshot has not arrived is
    skipped (the snapshot will contain its effect).
    """
    offset = ops.offset
    for op in ops.ops:
        if loaded is None or loaded[key_slot(op_key(op))]:
            apply_op(keyspace, op)
        offset += 1
    return offset
