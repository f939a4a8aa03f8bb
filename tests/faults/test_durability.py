"""min_replicas refusals and timeouts, replica reads, and expirations reaching replicas as deletes.

One primary and one replica: with a single slot-owning primary nobody can
mark it FAIL, so stopping either node never triggers a failover here.
"""

from __future__ import annotations

import signal
import time

import grpc
import pytest

from slotcache.v1 import cache_pb2
from tests.support.nodes import Nodes, expect_failure, failure, wait_for
from tests.support.workload import (
    NOT_ENOUGH_REPLICAS,
    REPLICA_READ,
    REPLICATION_TIMEOUT,
    start_cluster,
    stats,
)

pytestmark = pytest.mark.slow

TIMEOUT_MS = 300
LAG_MS_KEY = "slotcache-replica-lag-ms"
LAG_OPS_KEY = "slotcache-replica-lag-ops"


def replica_get(node, key: bytes) -> tuple[bytes | None, dict[str, str]]:
    """A replica read: the value (None if absent) and the reply's trailing metadata."""
    reply, call = node.cache.Get.with_call(
        cache_pb2.GetRequest(key=key), timeout=5, metadata=REPLICA_READ
    )
    return (reply.value if reply.found else None), dict(call.trailing_metadata() or ())


def caught_up(primary, replica) -> bool:
    return stats(replica).get("repl.offset") == stats(primary).get("repl.offset")


def test_min_replicas_refuses_before_and_times_out_after_applying(factory, report_figure):
    # Every write needs one replica unless it says otherwise (--min-replicas 1).
    cluster = start_cluster(
        factory, 1, 1, "--min-replicas", "1", "--min-replicas-timeout", str(TIMEOUT_MS)
    )
    nodes = Nodes(cluster.addresses)
    try:
        primary, replica = nodes[0], nodes[1]
        key = b"durable"
        primary.set(key, b"v1")  # the server default: held until the replica has it
        assert replica_get(replica, key)[0] == b"v1"

        # More replicas than exist: refused before anything is applied.
        refused = expect_failure(
            lambda: primary.cache.Set(
                cache_pb2.SetRequest(key=key, value=b"v2", min_replicas=2), timeout=5
            )
        )
        assert refused.code == grpc.StatusCode.FAILED_PRECONDITION, refused
        assert refused.reason == NOT_ENOUGH_REPLICAS, refused
        assert refused.metadata == {"required": "2", "available": "1"}
        assert primary.get(key) == b"v1"

        # The replica stops acknowledging: the write is applied but the caller
        # learns, after --min-replicas-timeout, that it may not survive.
        cluster.nodes[1].send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            late = expect_failure(lambda: primary.set(key, b"v3"))
            waited = time.monotonic() - started
            assert late.code == grpc.StatusCode.DEADLINE_EXCEEDED, late
            assert late.reason == REPLICATION_TIMEOUT, late
            assert late.metadata == {"required": "1", "acknowledged": "0"}
            assert primary.get(key) == b"v3"
            assert TIMEOUT_MS / 1000 * 0.9 <= waited <= TIMEOUT_MS / 1000 + 1.0
            # Asking for no replica is answered at once.
            started = time.monotonic()
            primary.cache.Set(
                cache_pb2.SetRequest(key=b"async", value=b"a", min_replicas=0), timeout=5
            )
            async_s = time.monotonic() - started
            # In a pipeline each write is judged against its own requirement.
            batch = cache_pb2.PipelineRequest(
                ops=[
                    cache_pb2.Operation(id=1, set=cache_pb2.SetRequest(key=b"p1", value=b"x")),
                    cache_pb2.Operation(
                        id=2, set=cache_pb2.SetRequest(key=b"p2", value=b"y", min_replicas=0)
                    ),
                ]
            )
            (reply,) = list(primary.cache.Pipeline(iter([batch]), timeout=5))
            first, second = reply.results
            assert first.error.reason == REPLICATION_TIMEOUT, first
            assert second.HasField("set") and second.set.applied, second
        finally:
            cluster.nodes[1].send_signal(signal.SIGCONT)
        wait_for(lambda: replica_get(replica, key)[0] == b"v3", 10, "the replica to catch up")

        # No replica at all: refused, value unchanged; min_replicas=0 still works.
        cluster.kill(1)
        wait_for(lambda: stats(primary)["repl.replicas_in_sync"] == 0, 10, "the primary to notice")
        gone = expect_failure(lambda: primary.set(key, b"v4"))
        assert gone.code == grpc.StatusCode.FAILED_PRECONDITION, gone
        assert gone.reason == NOT_ENOUGH_REPLICAS, gone
        assert gone.metadata == {"required": "1", "available": "0"}
        assert primary.get(key) == b"v3"
        primary.cache.Set(cache_pb2.SetRequest(key=key, value=b"v5", min_replicas=0), timeout=5)
        assert primary.get(key) == b"v5"
        report_figure(
            f"min_replicas: a write whose replica is stopped fails with REPLICATION_TIMEOUT "
            f"after {waited * 1000:.0f} ms (--min-replicas-timeout {TIMEOUT_MS}) and stays "
            f"applied; min_replicas=0 meanwhile answered in {async_s * 1000:.1f} ms; too few "
            f"replicas are refused with NOT_ENOUGH_REPLICAS and nothing applied"
        )
    finally:
        nodes.close()


def test_replica_reads_report_lag_and_hide_expired_keys(factory, report_figure):
    cluster = start_cluster(factory, 1, 1)
    nodes = Nodes(cluster.addresses)
    try:
        primary, replica = nodes[0], nodes[1]
        primary.set(b"plain", b"p")
        wait_for(lambda: caught_up(primary, replica), 10, "the replica to catch up")

        # Served by the replica itself (its hits count), with its lag.
        hits = stats(replica)["hits"]
        value, trailer = replica_get(replica, b"plain")
        assert value == b"p"
        assert stats(replica)["hits"] == hits + 1
        assert int(trailer[LAG_OPS_KEY]) == 0
        assert 0 <= int(trailer[LAG_MS_KEY]) < 1000
        # Without the metadata the replica forwards the read to the primary.
        assert replica.get(b"plain") == b"p"
        assert stats(replica)["hits"] == hits + 1

        # Expirations reach the replica as deletes: it never expires keys itself.
        before = stats(replica)["keys"]
        primary.cache.MSet(
            cache_pb2.MSetRequest(
                entries=[
                    cache_pb2.SetRequest(key=b"ttl:%d" % i, value=b"t", ttl_ms=300)
                    for i in range(200)
                ]
            ),
            timeout=5,
        )
        wait_for(lambda: stats(replica)["keys"] == before + 200, 5, "the replica to get them")
        started = time.monotonic()
        wait_for(lambda: stats(replica)["keys"] == before, 10, "the deletes to reach the replica")
        dropped_s = time.monotonic() - started
        assert stats(primary)["expired.active"] > 0

        # With its primary silent, the replica keeps a logically expired key but
        # does not serve it, and says how stale its copy may be.
        primary.cache.Set(cache_pb2.SetRequest(key=b"short", value=b"s", ttl_ms=800), timeout=5)
        wait_for(lambda: replica_get(replica, b"short")[0] == b"s", 5, "the replica to get it")
        keys = stats(replica)["keys"]
        cluster.nodes[0].send_signal(signal.SIGSTOP)
        try:
            time.sleep(1.0)
            value, trailer = replica_get(replica, b"short")
            assert value is None
            assert stats(replica)["keys"] == keys
            stale_lag_ms = int(trailer[LAG_MS_KEY])
        finally:
            cluster.nodes[0].send_signal(signal.SIGCONT)
        wait_for(lambda: stats(replica)["keys"] == keys - 1, 10, "the delete to reach the replica")
        report_figure(
            f"replica reads: 200 keys with a 300 ms TTL left the replica "
            f"{dropped_s * 1000:.0f} ms after they reached it (deletes from the primary); "
            f"with the primary stopped for 1 s the replica hid an expired key and reported "
            f"lag {stale_lag_ms} ms"
        )
        assert stale_lag_ms >= 800, "a replica cut off from its primary reported itself fresh"
    finally:
        nodes.close()


def test_pipelined_replica_reads_are_served_by_the_replica(factory):
    cluster = start_cluster(factory, 1, 1)
    nodes = Nodes(cluster.addresses)
    try:
        primary, replica = nodes[0], nodes[1]
        primary.set(b"k", b"v")
        wait_for(lambda: caught_up(primary, replica), 10, "the replica to catch up")
        hits = stats(replica)["hits"]
        batch = cache_pb2.PipelineRequest(
            ops=[cache_pb2.Operation(id=1, get=cache_pb2.GetRequest(key=b"k"))]
        )
        try:
            (reply,) = list(replica.cache.Pipeline(iter([batch]), timeout=5, metadata=REPLICA_READ))
        except grpc.RpcError as exc:
            raise AssertionError(failure(exc)) from exc
        assert reply.results[0].get.value == b"v"
        assert stats(replica)["hits"] == hits + 1, "the read was not served by the replica"
    finally:
        nodes.close()
