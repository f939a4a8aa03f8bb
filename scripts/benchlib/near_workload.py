"""near: a near-cache hit next to a redis-py GET, both blocking calls for one hot key.

The near cache exists to answer repeated reads without a round trip, so the
figure that matters is what a hit costs the caller: ``Client.get`` of a key
the near cache holds, against the cheapest remote read a Python program can
make of the same key (redis-py GET to the bench's redis-server). Both sides
time every call with ``perf_counter_ns``; the ratio slotcache/redis says how
many times cheaper a hit is (lower is better).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis

import slotcache
from benchlib import dataset
from benchlib.peers import REDIS
from benchlib.results import MetricDef, WorkloadResult, compare
from benchlib.shared_servers import SharedServers
from benchlib.stats import percentile
from slotcache.ctl.launcher import LOOPBACK

TITLE = "blocking GET of one hot key: slotcache near-cache hit vs redis-py GET"
METRICS = (
    MetricDef("p50_us", "p50 latency", "µs", higher_is_better=False),
    MetricDef("p99_us", "p99 latency", "µs", higher_is_better=False),
)
# Calls per side at most: a hit takes about a microsecond, so the duration
# alone would collect tens of millions of samples.
MAX_SAMPLES = 500_000


def latencies(get: Callable[[bytes], Any], key: bytes, seconds: float) -> list[float]:
    """Microseconds of each ``get(key)`` made during ``seconds`` (at most MAX_SAMPLES), sorted."""
    clock = time.perf_counter_ns
    samples: list[int] = []
    append = samples.append
    end = time.monotonic() + seconds
    while len(samples) < MAX_SAMPLES and time.monotonic() < end:
        for _ in range(1000):
            started = clock()
            get(key)
            append(clock() - started)
    return sorted(s / 1000.0 for s in samples)


def figures(samples: list[float]) -> dict[str, float]:
    return {"p50_us": percentile(samples, 50), "p99_us": percentile(samples, 99)}


def run(servers: SharedServers, warmup_s: float, seconds: float) -> WorkloadResult:
    """Measure a hit on the standalone node's data and a redis-py GET of the same key."""
    key = dataset.key(0)
    target = servers.loaded(servers.slotcache())
    near = slotcache.NearCacheConfig(max_entries=1000)
    with slotcache.Client(target.seeds, near_cache=near) as client:
        deadline = time.monotonic() + 5.0
        hits = client.stats.near_cache_hits
        while client.stats.near_cache_hits == hits:  # the first reads subscribe
            if time.monotonic() > deadline:
                raise RuntimeError("the near cache never served the hot key")
            client.get(key)
            time.sleep(0.001)
        latencies(client.get, key, warmup_s)
        misses = client.stats.near_cache_misses
        ours = latencies(client.get, key, seconds)
        if client.stats.near_cache_misses != misses:
            raise RuntimeError("the hot key left the near cache during the measurement")
    reference = None
    redis_target = servers.redis()
    if redis_target is not None:
        servers.loaded(redis_target)
        with redis.Redis(host=LOOPBACK, port=redis_target.port) as rc:
            latencies(rc.get, key, warmup_s)
            reference = figures(latencies(rc.get, key, seconds))
    return WorkloadResult(
        "near",
        TITLE,
        REDIS,
        compare(METRICS, figures(ours), reference),
        reference_skipped=servers.redis_skipped,
        details={"samples": len(ours), "max_samples": MAX_SAMPLES},
    )
