"""Memory: bytes per key once a fresh server holds N keys (16-byte keys, 100-byte values).

The figure that matters to an operator is what the process really takes from
the machine, so the primary measure is the growth of the server's resident
set (VmRSS) while loading. Each server's own accounting (slotcache's
estimated ``memory.used``, redis's ``used_memory``) is reported beside it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchlib import dataset, procfs
from benchlib.peers import (
    REDIS,
    SLOTCACHE,
    Target,
    preload,
    redis_info,
    slotcache_stats,
    sync_client,
)
from benchlib.processes import redis_server, slotcache_server
from benchlib.results import MetricDef, WorkloadResult, compare
from benchlib.stats import per_item

TITLE = "bytes per key (16 B keys, 100 B values)"
METRICS = (
    MetricDef("rss_bytes_per_key", "RSS growth per key", "B", False),
    MetricDef("used_memory_bytes_per_key", "server's own count per key", "B", False),
)
# Let the allocator and any deferred frees settle before the second reading.
_SETTLE_S = 0.5


def _keys_and_used_memory(target: Target) -> tuple[int, int]:
    if target.peer == SLOTCACHE:
        stats = slotcache_stats(target)
        return stats["keys"], stats["memory.used"]
    info = redis_info(target)
    db0: dict[str, Any] = info.get("db0", {})
    return int(db0.get("keys", 0)), int(info["used_memory"])


def measure(target: Target, n: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Load ``n`` keys into a fresh server and divide its growth by ``n``."""
    value = dataset.value()
    _, used0 = _keys_and_used_memory(target)
    rss0 = procfs.rss_bytes(target.pid)
    with sync_client(target) as kv:
        preload(kv, n, value)
    time.sleep(_SETTLE_S)
    rss1 = procfs.rss_bytes(target.pid)
    held, used1 = _keys_and_used_memory(target)
    if held != n:
        raise RuntimeError(f"{target.peer} holds {held} keys after loading {n}")
    figures = {
        "rss_bytes_per_key": per_item(rss1 - rss0, n) or 0.0,
        "used_memory_bytes_per_key": per_item(used1 - used0, n) or 0.0,
    }
    details = {"rss_before": rss0, "rss_after": rss1, "used_before": used0, "used_after": used1}
    return figures, details


def run(work_dir: Path, n: int, redis_skipped: str | None) -> WorkloadResult:
    """Measure a fresh slotcache, then a fresh redis-server (unless it is unavailable)."""
    result = WorkloadResult("memory", TITLE, REDIS)
    with slotcache_server(work_dir) as sc:
        sc_figures, sc_details = measure(Target.of(SLOTCACHE, sc), n)
    result.details = {"keys": n, "slotcache": sc_details, "pids": {SLOTCACHE: sc.pid}}
    ref_figures = None
    if redis_skipped is None:
        with redis_server(work_dir) as rs:
            ref_figures, result.details["redis"] = measure(Target.of(REDIS, rs), n)
        result.details["pids"][REDIS] = rs.pid
    result.reference_skipped = redis_skipped
    result.metrics = compare(METRICS, sc_figures, ref_figures)
    return result
