"""The slotcache and redis-server pair that w1-w3 and the server-only workload share.

They are started on first use (a run of only ``memory`` starts neither),
preloaded once with the same keys and value, and stopped by the caller's
ExitStack whatever happens.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from benchlib import dataset
from benchlib.peers import REDIS, SLOTCACHE, Target, check_loaded, preload, sync_client
from benchlib.processes import redis_server, slotcache_server


class SharedServers:
    """Lazily started servers whose lifetime is tied to ``stack``."""

    def __init__(
        self, stack: ExitStack, work_dir: Path, keys: int, redis_skipped: str | None
    ) -> None:
        self._stack = stack
        self._work_dir = work_dir
        self._keys = keys
        self.redis_skipped = redis_skipped
        self._slotcache: Target | None = None
        self._redis: Target | None = None
        self._loaded: set[str] = set()

    def slotcache(self) -> Target:
        """The slotcache node, started if need be."""
        if self._slotcache is None:
            sc = self._stack.enter_context(slotcache_server(self._work_dir))
            self._slotcache = Target(SLOTCACHE, sc.port, sc.pid)
        return self._slotcache

    def redis(self) -> Target | None:
        """The redis-server, started if need be; None when it is not installed."""
        if self.redis_skipped is not None:
            return None
        if self._redis is None:
            rs = self._stack.enter_context(redis_server(self._work_dir))
            self._redis = Target(REDIS, rs.port, rs.pid)
        return self._redis

    def loaded(self, target: Target) -> Target:
        """``target`` after every benchmark key has been written to it (once)."""
        if target.peer not in self._loaded:
            value = dataset.value()
            with sync_client(target) as kv:
                preload(kv, self._keys, value)
                check_loaded(kv, self._keys, value)
            self._loaded.add(target.peer)
        return target
