"""What a node knows about a migration it takes part in, for MigrationStatus."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from slotcache.contract import to_ranges
from slotcache.v1 import admin_pb2, cache_pb2

_STATES = {
    "snapshot": admin_pb2.MIGRATION_STATE_SNAPSHOT,
    "streaming": admin_pb2.MIGRATION_STATE_STREAMING,
    "handoff": admin_pb2.MIGRATION_STATE_HANDOFF,
    "done": admin_pb2.MIGRATION_STATE_DONE,
    "failed": admin_pb2.MIGRATION_STATE_FAILED,
}


@dataclass
class MigrationRecord:
    """Progress of one migration, on one side."""

    migration_id: str
    side: str
    source_id: str
    target_id: str
    slots: list[int]
    state: str = "snapshot"
    slots_done: int = 0
    keys: int = 0
    bytes: int = 0
    error: str = ""
    started: float = field(default_factory=time.monotonic)
    finished: float = 0.0

    @property
    def active(self) -> bool:
        """Still running."""
        return self.state not in ("done", "failed")

    def fail(self, error: str) -> None:
        """Mark the migration failed (the source kept the slots)."""
        self.state = "failed"
        self.error = error
        self.finished = time.monotonic()

    def to_proto(self) -> admin_pb2.MigrationProgress:
        """The wire form."""
        end = self.finished or time.monotonic()
        return admin_pb2.MigrationProgress(
            migration_id=self.migration_id,
            source_id=self.source_id,
            target_id=self.target_id,
            slots=[cache_pb2.SlotRange(start=s, end=e) for s, e in to_ranges(self.slots)],
            state=_STATES[self.state],
            slots_done=self.slots_done,
            keys=self.keys,
            bytes=self.bytes,
            elapsed_s=end - self.started,
            error=self.error,
            side=self.side,
        )
