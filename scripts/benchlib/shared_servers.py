"""The servers that several workloads share: slotcache, redis-server and a slotcache cluster.

They are started on first use (a run of only ``memory`` starts none of
them), preloaded once with the same keys and value, and stopped by the
caller's ExitStack whatever happens.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from benchlib import dataset
from benchlib.peers import REDIS, SLOTCACHE, Node, Target, check_loaded, preload, sync_client
from benchlib.processes import redis_server, slotcache_cluster, slotcache_server


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
        self._clusters: dict[int, Target] = {}
        # By the processes holding the data, not by target: a cluster reached
        # through two routing modes is still loaded only once.
        self._loaded: set[tuple[Node, ...]] = set()

    def slotcache(self) -> Target:
        """The standalone slotcache node, started if need be."""
        if self._slotcache is None:
            sc = self._stack.enter_context(slotcache_server(self._work_dir))
            self._slotcache = Target.of(SLOTCACHE, sc)
        return self._slotcache

    def cluster(self, primaries: int) -> Target:
        """A slotcache cluster of ``primaries`` nodes, formed if need be; smart routing."""
        if primaries not in self._clusters:
            nodes = self._stack.enter_context(slotcache_cluster(self._work_dir, primaries))
            self._clusters[primaries] = Target.of(SLOTCACHE, *nodes)
        return self._clusters[primaries]

    def redis(self) -> Target | None:
        """The redis-server, started if need be; None when it is not installed."""
        if self.redis_skipped is not None:
            return None
        if self._redis is None:
            rs = self._stack.enter_context(redis_server(self._work_dir))
            self._redis = Target.of(REDIS, rs)
        return self._redis

    def loaded(self, target: Target) -> Target:
        """``target`` after every benchmark key has been written to its servers (once)."""
        if target.nodes not in self._loaded:
            value = dataset.value()
            with sync_client(target) as kv:
                preload(kv, self._keys, value)
                check_loaded(kv, self._keys, value)
            self._loaded.add(target.nodes)
        return target
