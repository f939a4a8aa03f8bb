"""Restart: a lone primary with N keys (100 B values, half with a TTL) comes back warm.

slotcache writes its snapshot on SIGTERM (``--snapshot on-shutdown``) and
loads it before it reports SERVING; redis-server writes an RDB with SAVE and
loads it at boot. Each side is timed from the new process's spawn until it
answers with every key, and each key with a TTL must still have one, no
longer than before the restart. The save and load figures are the servers'
own (slotcache's log and Info counters; redis's SAVE call and its log), in
wall-clock seconds and in the server process's CPU seconds: on a shared
machine the first also counts time the process waited for a core.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

import slotcache
from benchlib import dataset, procfs
from benchlib.peers import REDIS, SLOTCACHE, Target, slotcache_stats
from benchlib.processes import ChildProcess, redis_server, slotcache_server
from benchlib.results import MetricDef, WorkloadResult, compare
from slotcache.ctl.launcher import LOOPBACK

TITLE = "restart with N keys kept (lone primary)"
METRICS = (
    MetricDef("save_s", "save", "s", False),
    MetricDef("load_s", "load", "s", False),
    MetricDef("restart_s", "spawn to serving every key", "s", False),
    MetricDef("save_cpu_s", "save, server CPU", "s", False),
    MetricDef("load_cpu_s", "load, server CPU", "s", False),
)
TTL_MS = 3_600_000
LOAD_BATCH = 1000
_SAVED = re.compile(r"saved (\d+) keys to .* in ([\d.]+)s \(cpu ([\d.]+)s\)")
_REDIS_LOADED = re.compile(r"DB loaded from disk: ([\d.]+) seconds")
_POLL_S = 0.01
_READY_TIMEOUT_S = 120.0


def _fill(write: Callable[[list[bytes], bytes, bool], None], n: int) -> None:
    """Write the first ``n`` keys in batches; every other batch gets a TTL."""
    value = dataset.value()
    for i, batch in enumerate(dataset.batches(n, LOAD_BATCH)):
        write([dataset.key(k) for k in batch], value, i % 2 == 1)


def _probe_keys(n: int) -> list[bytes]:
    """Keys of batches written with a TTL (odd batches), spread over the key range."""
    batches = max(1, n // LOAD_BATCH)
    picks = sorted({1, batches // 2 | 1, (batches - 1) | 1} & set(range(1, batches, 2)))
    return [dataset.key(b * LOAD_BATCH) for b in picks]


def _check_ttls(before: dict[bytes, int], after: dict[bytes, int]) -> None:
    for key, ttl in before.items():
        if not 0 < after[key] <= ttl:
            raise RuntimeError(f"{key!r} had {ttl} ms to live, {after[key]} after the restart")


def measure_slotcache(work_dir: Path, n: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Fill a fresh node, stop it (it saves), start it again, time each step."""
    with slotcache_server(work_dir, ["--snapshot", "on-shutdown"]) as server:
        with slotcache.Client(server.address) as client:

            def write(keys: list[bytes], value: bytes, ttl: bool) -> None:
                client.mset(dict.fromkeys(keys, value), ttl_ms=TTL_MS if ttl else None)

            _fill(write, n)
            probes = _probe_keys(n)
            before = {k: client.ttl(k) for k in probes}
        stopping = time.monotonic()
        server.stop(timeout=120)
        stop_s = time.monotonic() - stopping
        match = _SAVED.search(server.log())
        if match is None or int(match.group(1)) != n:
            raise RuntimeError(f"slotcache did not report saving {n} keys:\n{server.log()[-2000:]}")
        spawned = time.monotonic()
        server.start(ready_timeout=_READY_TIMEOUT_S)
        restart_s = time.monotonic() - spawned
        stats = slotcache_stats(Target.of(SLOTCACHE, server))
        if stats["keys"] != n:
            raise RuntimeError(f"slotcache holds {stats['keys']} keys after the restart, not {n}")
        with slotcache.Client(server.address) as client:
            _check_ttls(before, {k: client.ttl(k) for k in probes})
        snapshot = next(server.data_dir.glob("snapshot*"), None)
        pid = server.pid
    figures = {
        "save_s": float(match.group(2)),
        "load_s": stats["snapshot.last_load_ms"] / 1000,
        "restart_s": restart_s,
        "save_cpu_s": float(match.group(3)),
        "load_cpu_s": stats["snapshot.last_load_cpu_ms"] / 1000,
    }
    details = {
        "sigterm_to_exit_s": stop_s,
        "file_bytes": snapshot.stat().st_size if snapshot else 0,
        "pid": pid,
    }
    return figures, details


def _answers_with(port: int, n: int) -> bool:
    """PING answers (not LOADING) and every key is there."""
    with redis.Redis(host=LOOPBACK, port=port, socket_timeout=1) as r:
        return bool(r.ping()) and int(r.dbsize()) == n


def measure_redis(work_dir: Path, n: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Fill a fresh redis-server, SAVE, restart it on the same port and folder, time each step."""
    with redis_server(work_dir) as child:
        with redis.Redis(host=LOOPBACK, port=child.port) as r:

            def write(keys: list[bytes], value: bytes, ttl: bool) -> None:
                pipe = r.pipeline(transaction=False)
                for key in keys:
                    pipe.set(key, value, px=TTL_MS if ttl else None)
                pipe.execute()

            _fill(write, n)
            probes = _probe_keys(n)
            before = {k: int(r.pttl(k)) for k in probes}
            saving, cpu = time.monotonic(), procfs.cpu_seconds(child.pid)
            r.save()
            save_s = time.monotonic() - saving
            save_cpu_s = procfs.cpu_seconds(child.pid) - cpu
        child.stop(timeout=120)
        spawned = time.monotonic()
        _restart(child, n)
        restart_s = time.monotonic() - spawned
        # Start-up included: a C server's is a few milliseconds.
        load_cpu_s = procfs.cpu_seconds(child.pid)
        with redis.Redis(host=LOOPBACK, port=child.port) as r:
            _check_ttls(before, {k: int(r.pttl(k)) for k in probes})
        loaded = _REDIS_LOADED.findall(child.log())
        if not loaded:
            raise RuntimeError(f"redis-server did not log loading its RDB:\n{child.log()[-2000:]}")
        rdb_dir = Path(child.args[child.args.index("--dir") + 1])
    figures = {
        "save_s": save_s,
        "load_s": float(loaded[-1]),
        "restart_s": restart_s,
        "save_cpu_s": save_cpu_s,
        "load_cpu_s": load_cpu_s,
    }
    details = {
        "file_bytes": (rdb_dir / "dump.rdb").stat().st_size,
        "pid": child.pid,
    }
    return figures, details


def _restart(child: ChildProcess, n: int) -> None:
    """Start ``child`` again with the same arguments; wait until it serves all ``n`` keys."""
    child.start()
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while True:
        try:
            if _answers_with(child.port, n):
                return
        except redis.RedisError:
            pass  # connection refused, or LOADING: not yet
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not serve {n} keys again:\n{child.log()[-2000:]}")
        time.sleep(_POLL_S)


def run(work_dir: Path, n: int, redis_skipped: str | None) -> WorkloadResult:
    """Measure slotcache, then redis-server (unless it is unavailable)."""
    result = WorkloadResult("restart", TITLE, REDIS)
    sc_figures, sc_details = measure_slotcache(work_dir, n)
    result.details = {"keys": n, "slotcache": sc_details, "pids": {SLOTCACHE: sc_details["pid"]}}
    ref_figures = None
    if redis_skipped is None:
        ref_figures, result.details["redis"] = measure_redis(work_dir, n)
        result.details["pids"][REDIS] = result.details["redis"]["pid"]
    result.reference_skipped = redis_skipped
    result.metrics = compare(METRICS, sc_figures, ref_figures)
    return result
