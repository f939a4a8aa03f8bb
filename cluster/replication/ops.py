"""Replication operations: built from keyspace changes, applied to a replica's keyspace."""

from __future__ import annotations

from collections.abc import Callable

from ..keyspace import Keyspace, RemovalCause
from ..wire import replication_pb2 as pb


class OpRecorder:
    """A keyspace listener that turns every change into a :class:`pb.ReplOp` for ``sink``."""

    def __init__(self, sink: Callable[[pb.ReplOp], None]) -> None:
        self._sink = sink

    def key_set(self, slot: int, key: bytes, value: bytes, deadline: int) -> None:
        """A value was written."""
        self._sink(pb.ReplOp(set=pb.SetOp(key=key, value=value, deadline_ms=deadline)))

    def key_removed(self, slot: int, key: bytes, cause: RemovalCause) -> None:
        """A key was removed (expiry and eviction included: replicas never decide those)."""
        self._sink(pb.ReplOp(delete=key))

    def deadline_set(self, slot: int, key: bytes, deadline: int) -> None:
        """A key's TTL changed."""
        self._sink(pb.ReplOp(deadline=pb.DeadlineOp(key=key, deadline_ms=deadline)))


def op_key(op: pb.ReplOp) -> bytes:
    """The key an operation touches."""
    kind = op.WhichOneof("op")
    if kind == "set":
        return op.set.key
    if kind == "delete":
        return op.delete
    return op.deadline.key


def apply_op(keyspace: Keyspace, op: pb.ReplOp) -> None:
    """Apply one operation exactly, whatever the key's state (expired keys included)."""
    kind = op.WhichOneof("op")
    if kind == "set":
        s = op.set
        keyspace.set_with_deadline(s.key, s.value, s.deadline_ms)
    elif kind == "delete":
        keyspace.discard(op.delete)
    elif kind == "deadline":
        keyspace.set_deadline(op.deadline.key, op.deadline.deadline_ms)
