"""The replication backlog: recent operations of one history, addressed by offset.

A replica that reconnects says which history (replication id) it follows and
how far it got; while the backlog still holds the operations from there on,
the primary sends just those (partial sync) instead of everything.

After a failover the promoted replica starts a new history but remembers the
old one up to where it left it, so the other replicas of the old primary can
continue from their offsets instead of syncing from scratch (Redis's PSYNC2).
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass
from itertools import islice

from ..wire import replication_pb2 as pb


def new_replid() -> str:
    """A fresh 40-hex-digit replication id."""
    return secrets.token_hex(20)


@dataclass(frozen=True, slots=True)
class History:
    """A replication id and the offset up to which this node's data follows it."""

    replid: str
    until: int


class Backlog:
    """Operations ``[start, offset)`` of history ``replid``, bounded by encoded bytes.

    They are held encoded: bytes are invisible to Python's cyclic garbage
    collector, while a hundred thousand message objects (16 MB of small
    writes) make every full collection stall the event loop for tens of ms.
    """

    def __init__(self, max_bytes: int, replid: str | None = None, offset: int = 0) -> None:
        if max_bytes < 1:
            raise ValueError("backlog size must be at least 1 byte")
        self.max_bytes = max_bytes
        self.replid = replid or new_replid()
        self.offset = offset
        self.previous: History | None = None
        self._ops: deque[bytes] = deque()
        self._bytes = 0

    @property
    def start(self) -> int:
        """Offset of the oldest operation still held."""
        return self.offset - len(self._ops)

    @property
    def size_bytes(self) -> int:
        """Encoded size of the operations held."""
        return self._bytes

    def append(self, op: pb.ReplOp) -> int:
        """Add the next operation; return its offset."""
        return self.append_encoded(op.SerializeToString())

    def append_encoded(self, data: bytes) -> int:
        """Add the next operation, already encoded; return its offset."""
        self._ops.append(data)
        self._bytes += len(data)
        while self._bytes > self.max_bytes and len(self._ops) > 1:
            self._bytes -= len(self._ops.popleft())
        offset = self.offset
        self.offset += 1
        return offset

    def can_continue(self, replid: str, offset: int) -> bool:
        """Whether a replica at ``(replid, offset)`` can be served from this backlog."""
        if not self.start <= offset <= self.offset:
            return False
        if replid == self.replid:
            return True
        previous = self.previous
        return previous is not None and replid == previous.replid and offset <= previous.until

    def since(self, offset: int) -> list[pb.ReplOp]:
        """The operations from ``offset`` on; ``can_continue`` must have allowed it."""
        skip = offset - self.start
        if skip < 0:
            raise ValueError(f"offset {offset} is no longer in the backlog")
        return [pb.ReplOp.FromString(data) for data in islice(self._ops, skip, None)]

    def fork(self) -> None:
        """Start a new history here (this node was promoted); keep the old one addressable."""
        self.previous = History(self.replid, self.offset)
        self.replid = new_replid()

    def reset(self, replid: str, offset: int) -> None:
        """Follow another node's history from ``offset`` with nothing held (after a full sync)."""
        self.replid = replid
        self.offset = offset
        self.previous = None
        self._ops.clear()
        self._bytes = 0
