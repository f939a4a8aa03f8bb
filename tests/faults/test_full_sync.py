"""A fresh replica full-syncs a million keys while writes continue, without stalling either node."""

from __future__ import annotations

import os
import random
import threading
import time

import pytest

from slotcache.v1 import cache_pb2
from tests.support.nodes import Nodes, wait_for
from tests.support.workload import (
    REPLICA_READ,
    parallel,
    replicate,
    start_cluster,
    start_node,
    stats,
)

pytestmark = pytest.mark.slow

KEYS = 1_000_000
VALUE_BYTES = 100
LOAD_BATCH = 1000
COMPARE_BATCH = 2000
# Targets: the sync within 20 s, no event-loop stall above 50 ms on either node.
SYNC_BOUND_S = 20.0
STALL_BOUND_MS = 50


def key(i: int) -> bytes:
    return b"fs:%07d" % i


def value(i: int, version: int = 0) -> bytes:
    return (b"v%d-%07d-" % (version, i)).ljust(VALUE_BYTES, b".")


def load(node, count: int) -> None:
    """MSet ``count`` keys in batches, two batches in flight (one encoding while one is served)."""

    def part(first: int) -> None:
        for start in range(first * LOAD_BATCH, count, 2 * LOAD_BATCH):
            entries = [
                cache_pb2.SetRequest(key=key(i), value=value(i))
                for i in range(start, min(start + LOAD_BATCH, count))
            ]
            reply = node.cache.MSet(cache_pb2.MSetRequest(entries=entries), timeout=30)
            assert all(reply.applied)

    parallel([lambda: part(0), lambda: part(1)])


class Churn(threading.Thread):
    """Overwrites, deletes and adds keys in small MSet batches until stopped."""

    def __init__(self, node, stop: threading.Event) -> None:
        super().__init__(name="churn", daemon=True)
        self.node = node
        self.stop_event = stop
        self.added: list[bytes] = []
        self.writes = 0
        self.crash: BaseException | None = None

    def run(self) -> None:
        rng = random.Random(7)
        version = 0
        try:
            while not self.stop_event.is_set():
                version += 1
                picks = [rng.randrange(KEYS) for _ in range(40)]
                fresh = [b"fsnew:%d" % (len(self.added) + j) for j in range(10)]
                entries = [cache_pb2.SetRequest(key=key(i), value=value(i, version)) for i in picks]
                entries += [cache_pb2.SetRequest(key=k, value=b"new-" + k) for k in fresh]
                self.node.cache.MSet(cache_pb2.MSetRequest(entries=entries), timeout=10)
                self.added.extend(fresh)
                doomed = [key(rng.randrange(KEYS)) for _ in range(5)]
                self.node.cache.MDelete(cache_pb2.MDeleteRequest(keys=doomed), timeout=10)
                self.writes += len(entries) + len(doomed)
                time.sleep(0.01)
        except BaseException as exc:
            self.crash = exc


def compare(primary, replica, keys: list[bytes]) -> tuple[int, int, list[int]]:
    """Read every key from both nodes; return (found on the primary, on the replica, bad batches).

    Each batch's replies are compared as serialized messages: equal bytes,
    equal presence and values for every key of the batch, in order.
    """
    found_primary = found_replica = 0
    differing = []
    for n, start in enumerate(range(0, len(keys), COMPARE_BATCH)):
        request = cache_pb2.MGetRequest(keys=keys[start : start + COMPARE_BATCH])
        mine, theirs = parallel(
            [
                lambda r=request: primary.cache.MGet(r, timeout=30),
                lambda r=request: replica.cache.MGet(r, timeout=30, metadata=REPLICA_READ),
            ]
        )
        found_primary += sum(1 for r in mine.results if r.found)
        found_replica += sum(1 for r in theirs.results if r.found)
        if mine.SerializeToString() != theirs.SerializeToString():
            differing.append(n)
    return found_primary, found_replica, differing


def test_a_replica_full_syncs_a_million_keys_under_writes(factory, report_figure):
    cluster = start_cluster(factory, 1, 0)
    nodes = Nodes(cluster.addresses)
    replica = None
    try:
        primary = nodes[0]
        started = time.monotonic()
        load(primary, KEYS)
        loaded_s = time.monotonic() - started
        before = stats(primary)
        assert before["keys"] == KEYS
        replica = start_node(factory, cluster)

        stop = threading.Event()
        churn = Churn(primary, stop)
        churn.start()
        try:
            time.sleep(0.2)
            sync_started = time.monotonic()
            replicate(replica, primary)

            def synced() -> bool:
                s = stats(replica)
                return s.get("repl.full_syncs", 0) >= 1 and s.get("repl.syncing") == 0

            wait_for(synced, 60, "the replica to finish its full sync", interval=0.02)
            sync_s = time.monotonic() - sync_started
            load_average = os.getloadavg()[0]
            time.sleep(0.5)  # writes keep flowing to the synced replica
        finally:
            stop.set()
            churn.join(15)
        assert churn.crash is None, churn.crash
        wait_for(
            lambda: stats(replica).get("repl.offset") == stats(primary).get("repl.offset"),
            20,
            "the replica to apply the tail of the writes",
        )
        primary_stats, replica_stats = stats(primary), stats(replica)
        assert primary_stats["repl.replicas_in_sync"] == 1
        assert primary_stats["repl.full_syncs_served"] == 1
        assert replica_stats["repl.full_syncs"] == 1

        compare_started = time.monotonic()
        universe = [key(i) for i in range(KEYS)] + churn.added
        found_primary, found_replica, differing = compare(primary, replica, universe)
        compare_s = time.monotonic() - compare_started
        stalls = {
            name: (s["loop.lag_max_ms"], s["loop.lag_cpu_max_ms"])
            for name, s in (("primary", primary_stats), ("replica", replica_stats))
        }
        report_figure(
            f"full sync of {KEYS} keys ({VALUE_BYTES}-byte values) under "
            f"{churn.writes} concurrent writes: {sync_s:.2f} s (bound {SYNC_BOUND_S:.0f} s); "
            f"worst event-loop stall since start, wall clock / own CPU work: primary "
            f"{stalls['primary'][0]} / {stalls['primary'][1]} ms (before the sync, i.e. "
            f"during the load: {before['loop.lag_max_ms']} / {before['loop.lag_cpu_max_ms']} ms), "
            f"replica {stalls['replica'][0]} / {stalls['replica'][1]} ms (bound "
            f"{STALL_BOUND_MS} ms on own work; load average {load_average:.1f} on "
            f"{os.cpu_count()} CPUs); load {loaded_s:.1f} s, full comparison of "
            f"{len(universe)} keys {compare_s:.1f} s"
        )
        # The replica holds exactly the primary's keys and values.
        assert differing == [], f"{len(differing)} batches of {COMPARE_BATCH} keys differ"
        assert found_primary == found_replica == primary_stats["keys"] == replica_stats["keys"]
        assert sync_s <= SYNC_BOUND_S
        # Stalls the nodes' own code caused; the wall-clock figure also counts
        # time a busy host did not run the process, so it is reported only.
        assert stalls["primary"][1] <= STALL_BOUND_MS
        assert stalls["replica"][1] <= STALL_BOUND_MS
    finally:
        if replica is not None:
            replica.close()
        nodes.close()
