"""The SDK against a primary with a replica: min_replicas and replica reads, on real processes."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

import slotcache
from tests.support.nodes import eventually
from tests.support.processes import Cluster, ServerFactory

# A short acknowledgement timeout keeps the ReplicationTimeout case quick.
ACK_TIMEOUT_MS = "400"


def synced_write(c: Any, key: bytes) -> bool:
    """A min_replicas=1 write succeeds once the replica has finished its full sync."""
    try:
        return bool(c.set(key, b"sync", min_replicas=1, timeout=2))
    except (slotcache.NotEnoughReplicas, slotcache.ReplicationTimeout):
        return False


def test_min_replicas_and_replica_reads_with_one_replica(
    servers: ServerFactory, connect: Callable[..., Any]
) -> None:
    cluster = Cluster.start(servers, 1, 1000, "--min-replicas-timeout", ACK_TIMEOUT_MS, replicas=1)
    primary, replica = cluster.nodes
    c = connect(primary.address, timeout=10)
    assert eventually(lambda: synced_write(c, b"probe"), timeout=20.0, interval=0.05)

    # Enough replicas: the write returns once the replica holds it.
    assert c.set(b"k", b"v1", min_replicas=1) is True
    assert c.incr(b"n", 2, min_replicas=1) == 2
    assert c.mset({b"a": 1, b"b": "two"}, min_replicas=1) is None
    # More replicas than exist: refused before anything is applied.
    with pytest.raises(slotcache.NotEnoughReplicas) as info:
        c.set(b"k", b"v2", min_replicas=2)
    assert info.value.metadata == {"required": "2", "available": "1"}
    assert c.get(b"k") == b"v1"
    assert c.stats.retries == 0

    # Replica reads: served by the replica, which reports its lag.
    assert eventually(lambda: c.get(b"k", replica_ok=True) == b"v1", timeout=20.0, interval=0.05)
    assert c.stats.replica_reads >= 1
    assert c.stats.replica_lag_ms is not None and c.stats.replica_lag_ms >= 0
    assert c.stats.replica_lag_ops is not None
    assert c.mget([b"a", b"b"], replica_ok=True) == [1, "two"]

    # A replica that stops acknowledging: the write is applied on the primary, but
    # its durability is unknown, and it is not retried.
    replica.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(slotcache.ReplicationTimeout) as late:
            c.set(b"k", b"v3", min_replicas=1)
        assert time.monotonic() - started < 5
        assert isinstance(late.value, slotcache.Timeout)
        assert late.value.reason == "REPLICATION_TIMEOUT"
        assert c.get(b"k") == b"v3"  # applied on the primary
        assert c.stats.retries == 0
        assert c.stats.faults[("set", "ReplicationTimeout")] == 1
    finally:
        replica.send_signal(signal.SIGCONT)
    assert eventually(lambda: synced_write(c, b"probe"), timeout=20.0, interval=0.05)


def test_client_level_replica_reads(servers: ServerFactory) -> None:
    cluster = Cluster.start(servers, 1, 1000, replicas=1)
    primary = cluster.nodes[0]
    with slotcache.Client(primary.address, read_from_replicas=True, timeout=10) as c:
        assert eventually(lambda: synced_write(c, b"probe"), timeout=20.0, interval=0.05)
        c.set(b"k", {"v": 1}, min_replicas=1)
        assert eventually(
            lambda: c.get(b"k") == {"v": 1} and c.stats.replica_reads > 0,
            timeout=20.0,
            interval=0.05,
        )
        reads = c.stats.replica_reads
        assert c.get(b"k", replica_ok=False) == {"v": 1}  # per call: the primary
        assert c.stats.replica_reads == reads
