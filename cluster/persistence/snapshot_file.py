"""Writing a snapshot file while serving, and reading one back whole.

Writing copies one slot per step of the event loop, as a full sync does, so
each slot is consistent; changes to slots already copied are recorded and
written behind them, so the file ends as the keyspace stood at its END
frame. The file is written under a temporary name, fsynced and renamed, so
a crash leaves the previous snapshot or the new one, never a torn one.

Reading decodes and checks the whole file before anything touches the
keyspace: a corrupt or truncated file leaves the node empty, never half
loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from slotcache.contract import SLOT_COUNT

from ..keyspace import Keyspace, RemovalCause
from ..persistence import format as fmt
from ..replication.ops import EncodedOpRecorder, apply_op
from ..wire import replication_pb2 as pb

# Work done between two yields to the event loop while writing; the issue's
# bound on a stall is 50 ms, and one slot's copy is the only unsliced step.
SLICE_S = 0.01


class _CopiedSlotsRecorder:
    """Records changes to slots already in the file; later slots' copies include theirs."""

    def __init__(self, copied: bytearray) -> None:
        self.copied = copied
        self.ops: list[bytes] = []
        self._recorder = EncodedOpRecorder(self.ops.append)

    def key_set(self, slot: int, key: bytes, value: bytes, deadline: int) -> None:
        if self.copied[slot]:
            self._recorder.key_set(slot, key, value, deadline)

    def key_removed(self, slot: int, key: bytes, cause: RemovalCause) -> None:
        if self.copied[slot]:
            self._recorder.key_removed(slot, key, cause)

    def deadline_set(self, slot: int, key: bytes, deadline: int) -> None:
        if self.copied[slot]:
            self._recorder.deadline_set(slot, key, deadline)

    def take(self) -> bytes:
        """The OPS frame for what was recorded since the last call ("" if nothing)."""
        if not self.ops:
            return b""
        frame = fmt.ops_frame(self.ops)
        self.ops.clear()  # the same list: the recorder appends to it
        return frame


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def write(
    keyspace: Keyspace,
    path: Path,
    describe: Callable[[], fmt.SnapshotMeta],
    pause_after: Callable[[float], float] | None = None,
    slice_s: float = SLICE_S,
) -> fmt.SnapshotMeta:
    """Write the keyspace to ``path`` atomically; ``describe`` gives the END frame's fields.

    ``describe`` is called in the loop step that copies the last slot, so
    the replication offset it reports is the file's. ``pause_after``
    (seconds a slice took -> seconds to pause) gives the CPU back to clients;
    ``slice_s`` is how long the copy holds the loop before it yields.
    """
    tmp = path.with_name(path.name + ".tmp")
    copied = bytearray(SLOT_COUNT)
    recorder = _CopiedSlotsRecorder(copied)
    keyspace.add_listener(recorder)
    try:
        with open(tmp, "wb") as f:
            pending = [fmt.header()]
            began = time.monotonic()
            for slot in range(SLOT_COUNT):
                if keyspace.slot_key_count(slot):
                    pending.append(fmt.slot_frame(slot, *keyspace.slot_columns(slot)))
                copied[slot] = 1
                if time.monotonic() - began >= slice_s:
                    pending.append(recorder.take())
                    f.write(b"".join(pending))
                    pending = []
                    await asyncio.sleep(pause_after(time.monotonic() - began) if pause_after else 0)
                    began = time.monotonic()
            keyspace.remove_listener(recorder)
            meta = describe()
            pending += [recorder.take(), fmt.end_frame(meta)]
            f.write(b"".join(pending))
            f.flush()
            # Flushing a large file to disk can take long: off the loop.
            await asyncio.to_thread(os.fsync, f.fileno())
        os.replace(tmp, path)
        await asyncio.to_thread(_fsync_dir, path.parent)
        return meta
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    finally:
        keyspace.remove_listener(recorder)


@dataclass
class Snapshot:
    """A whole snapshot file, decoded and checked, not yet in any keyspace."""

    meta: fmt.SnapshotMeta
    slots: list[fmt.SlotRecord] = field(default_factory=list)
    ops: list[pb.ReplOp] = field(default_factory=list)


def decode(data: bytes) -> Snapshot:
    """Decode a file's bytes; raise :class:`fmt.SnapshotError` unless it is whole and intact."""
    slots: list[fmt.SlotRecord] = []
    ops: list[pb.ReplOp] = []
    for kind, payload in fmt.frames(data):
        if kind == fmt.SLOT:
            slots.append(fmt.decode_slot(payload))
        elif kind == fmt.OPS:
            try:
                ops.extend(pb.ReplOps.FromString(bytes(payload)).ops)
            except Exception as exc:  # the protobuf runtime's DecodeError
                raise fmt.SnapshotError(f"unreadable operations record: {exc}") from None
        else:
            return Snapshot(fmt.decode_meta(payload), slots, ops)
    raise fmt.SnapshotError("no end record (truncated file)")  # frames() raises first


def read(path: Path) -> Snapshot | None:
    """The snapshot at ``path``, or None when there is none; raise if it is unusable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return decode(data)


def install(keyspace: Keyspace, snapshot: Snapshot) -> int:
    """Load a decoded snapshot into an empty keyspace that serves nobody yet; return its keys.

    Operations come after the copies of their slots in the file, and a
    slot's copy never depends on another slot, so loading every slot and
    then replaying the operations in order gives the state of the END frame.
    Should anything fail half-way the keyspace is emptied again.
    """
    try:
        for record in snapshot.slots:
            keyspace.load_slot(record.slot, record.keys, record.values, record.deadlines)
        for op in snapshot.ops:
            apply_op(keyspace, op)
    except BaseException:
        for slot in list(keyspace.nonempty_slots()):
            keyspace.clear_slot(slot)
        raise
    return keyspace.key_count
