"""A node's snapshot duties: load at boot, save on an interval and at shutdown.

A file the node cannot use is refused with one clear log line and moved
aside (kept for inspection, out of the way of the next save); the node then
starts empty, as it would without a snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from ..keyspace import Keyspace
from ..persistence import snapshot_file
from ..persistence.format import SnapshotError, SnapshotMeta
from ..persistence.policy import SnapshotPolicy

log = logging.getLogger(__name__)

SNAPSHOT_FILE = "snapshot.scs"
REJECTED_SUFFIX = ".rejected"


def snapshot_path(data_dir: Path) -> Path:
    """Where a node keeps its snapshot."""
    return data_dir / SNAPSHOT_FILE


class NodeSnapshots:
    """Loads and saves one node's snapshot according to its policy.

    ``describe(final)`` gives the END frame's fields for the keyspace as it
    stands (replication id and offset come from the node's replication).
    ``pause_after`` paces interval saves while clients are served.
    """

    def __init__(
        self,
        keyspace: Keyspace,
        data_dir: Path,
        policy: SnapshotPolicy,
        describe: Callable[[bool], SnapshotMeta],
        pause_after: Callable[[float], float] | None = None,
    ) -> None:
        self.keyspace = keyspace
        self.path = snapshot_path(data_dir)
        self.policy = policy
        self._describe = describe
        self._pause_after = pause_after
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.saves = 0
        # Wall-clock and CPU seconds of the last save and of the load at boot:
        # on a busy machine the first includes time the process was not run.
        self.last_save_s = 0.0
        self.last_save_cpu_s = 0.0
        self.last_load_s = 0.0
        self.last_load_cpu_s = 0.0
        self.loaded_keys = 0

    def load(self) -> SnapshotMeta | None:
        """Fill the (empty) keyspace from the snapshot, if there is a usable one."""
        if not self.policy.enabled:
            return None
        began, cpu = time.monotonic(), time.process_time()
        try:
            snapshot = snapshot_file.read(self.path)
            if snapshot is None:
                return None
            keys = snapshot_file.install(self.keyspace, snapshot)
        except (SnapshotError, OSError) as exc:
            rejected = self.path.with_name(self.path.name + REJECTED_SUFFIX)
            with contextlib.suppress(OSError):
                self.path.replace(rejected)
            log.error(
                "snapshot %s refused (%s); moved to %s, starting empty", self.path, exc, rejected
            )
            return None
        self.last_load_s = time.monotonic() - began
        self.last_load_cpu_s = time.process_time() - cpu
        self.loaded_keys = keys
        log.info(
            "loaded %d keys from %s in %.2fs (cpu %.2fs; saved at offset %d)",
            keys,
            self.path,
            self.last_load_s,
            self.last_load_cpu_s,
            snapshot.meta.offset,
        )
        return snapshot.meta

    def start(self) -> None:
        """Begin saving on the policy's interval, if it has one."""
        if self.policy.interval_s > 0 and self._task is None:
            self._task = asyncio.create_task(self._every_interval(), name="snapshot-interval")

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.policy.interval_s)
            try:
                await self.save(final=False)
            except OSError as exc:
                log.error("snapshot to %s failed: %s", self.path, exc)

    async def save(self, final: bool) -> SnapshotMeta:
        """Write the snapshot now; ``final`` when the node no longer takes writes."""
        async with self._lock:
            began, cpu = time.monotonic(), time.process_time()
            meta = await snapshot_file.write(
                self.keyspace,
                self.path,
                lambda: self._describe(final),
                None if final else self._pause_after,
            )
            self.last_save_s = time.monotonic() - began
            self.last_save_cpu_s = time.process_time() - cpu
            self.saves += 1
        log.info(
            "saved %d keys to %s in %.2fs (cpu %.2fs)",
            meta.keys,
            self.path,
            self.last_save_s,
            self.last_save_cpu_s,
        )
        return meta

    async def stop(self, keep: bool = True) -> None:
        """End interval saves; write the final snapshot, or delete the file unless ``keep``."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not keep:
            self.path.unlink(missing_ok=True)
        elif self.policy.on_shutdown:
            try:
                await self.save(final=True)
            except OSError as exc:
                log.error("final snapshot to %s failed: %s", self.path, exc)
