"""Change notifications from the keyspace.

Replication streams every change as an effect (a value with its absolute
deadline, a removal, a new deadline) rather than as the command that caused
it, so replicas stay identical without re-running logic such as Incr or
conditional Sets, and removals the keyspace decides on its own (expiry,
eviction, a lost slot) reach replicas as deletes. The listener is called
synchronously after each change.
"""

from __future__ import annotations

import enum
from typing import Protocol


class RemovalCause(enum.Enum):
    """Why a key went away."""

    DELETED = "deleted"
    EXPIRED = "expired"
    EVICTED = "evicted"


class KeyspaceListener(Protocol):
    """Receives every change to the keyspace, in order."""

    def key_set(self, slot: int, key: bytes, value: bytes, deadline: int) -> None:
        """``key`` now holds ``value`` with ``deadline`` (0 for none)."""

    def key_removed(self, slot: int, key: bytes, cause: RemovalCause) -> None:
        """``key`` was removed."""

    def deadline_set(self, slot: int, key: bytes, deadline: int) -> None:
        """``key`` kept its value but now has ``deadline`` (0 removes the TTL)."""
