"""The access log's promises, on real nodes: failed and slow calls always, 1 in N of the rest,
and a writer that cannot write never slows serving (its losses are counted)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import grpc
import pytest

from slotcache.ctl.launcher import ServerProcess
from slotcache.ctl.rpc import NodeHandle
from slotcache.latency import from_info, quantile_us
from slotcache.v1 import cache_pb2 as pb
from slotcache.v1 import cache_pb2_grpc
from tests.support.nodes import CHANNEL_OPTIONS
from tests.support.processes import ServerFactory

SAMPLE = 10
SLOW_US = 20_000


def _stats(server: ServerProcess) -> dict[str, int]:
    with NodeHandle.open(server.address, 5.0) as node:
        return dict(node.info().stats)


def _wait_written(server: ServerProcess, expected: int) -> dict[str, int]:
    deadline = time.monotonic() + 10
    while True:
        stats = _stats(server)
        done = sum(stats[f"access_log.{k}"] for k in ("written", "dropped", "failed"))
        if done >= expected or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


def _entries(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _stub(server: ServerProcess) -> tuple[grpc.Channel, cache_pb2_grpc.CacheStub]:
    channel = grpc.insecure_channel(server.address, options=CHANNEL_OPTIONS)
    return channel, cache_pb2_grpc.CacheStub(channel)


def test_failed_and_slow_calls_always_logged_the_rest_sampled(
    servers: ServerFactory, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    server = servers(
        "--access-log",
        str(log),
        "--access-log-sample",
        str(SAMPLE),
        "--slowlog-slower-than",
        str(SLOW_US),
        "--max-key-bytes",
        "32",
    )
    channel, stub = _stub(server)
    with channel:
        ok_calls = 2000
        for i in range(ok_calls):
            stub.Get(pb.GetRequest(key=b"k%d" % (i % 50)))
        failed = 40
        for _ in range(failed):
            with pytest.raises(grpc.RpcError):
                stub.Get(pb.GetRequest(key=b"y" * 33))
        # One large MSet is slow (tens of ms) however idle the machine is.
        big = pb.MSetRequest(
            entries=[pb.SetRequest(key=b"m%d" % i, value=b"v") for i in range(60_000)]
        )
        stub.MSet(big, timeout=60)
    # The slow MSet is logged for being slow and does not use up a sampling turn.
    stats = _wait_written(server, failed + 1 + ok_calls // SAMPLE)
    assert stats["access_log.dropped"] == 0
    entries = _entries(log)
    bad = [e for e in entries if e["status"] == "INVALID_ARGUMENT"]
    assert len(bad) == failed
    assert all(e["op"] == "Get" and e["key"] == "y" * 33 for e in bad)
    slow = [e for e in entries if e["op"] == "MSet"]
    assert len(slow) == 1 and slow[0]["us"] >= SLOW_US and slow[0]["keys"] == 60_000
    sampled = [e for e in entries if e["status"] == "OK" and e["op"] == "Get"]
    # A countdown, not a coin: exactly 1 in N.
    assert len(sampled) == ok_calls // SAMPLE
    one = sampled[0]
    assert set(one) == {"ts", "peer", "op", "key", "slot", "status", "us", "in", "out"}
    assert one["peer"].startswith("ipv4:127.0.0.1:") and one["key"].startswith("k")
    assert "user" not in one  # no access control yet: no user, and never a credential


def test_keys_can_be_hashed(servers: ServerFactory, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    server = servers(
        "--access-log", str(log), "--access-log-sample", "1", "--access-log-keys", "hash"
    )
    channel, stub = _stub(server)
    with channel:
        stub.Set(pb.SetRequest(key=b"secret-user-42", value=b"v"))
        stub.Get(pb.GetRequest(key=b"secret-user-42"))
    _wait_written(server, 2)
    entries = _entries(log)
    assert len(entries) == 2
    assert "key" not in entries[0] and entries[0]["key_hash"] == entries[1]["key_hash"]
    assert "secret" not in log.read_text()


def _gets(server: ServerProcess, n: int) -> None:
    channel, stub = _stub(server)
    with channel:
        for i in range(n):
            stub.Get(pb.GetRequest(key=b"k%d" % i))


def _median_us(server: ServerProcess) -> int:
    """The server-side median of every call so far (from its latency buckets)."""
    median = quantile_us(from_info(_stats(server)), 0.5)
    assert median is not None
    return median


def test_a_blocked_writer_neither_slows_serving_nor_loses_count(
    servers: ServerFactory, tmp_path: Path
) -> None:
    """The log is a FIFO nobody reads: the writer thread blocks opening it, forever.

    Serving time is compared on the server's own clock (its latency buckets),
    which other load on the machine disturbs far less than a client's timing.
    """
    fifo = tmp_path / "blocked.log"
    os.mkfifo(fifo)
    queue = 100
    blocked = servers(
        "--access-log", str(fifo), "--access-log-sample", "1", "--access-log-queue", str(queue)
    )
    plain = servers()
    calls = 1500
    for _ in range(3):  # interleaved, so both see the same background load
        _gets(blocked, calls // 3)
        _gets(plain, calls // 3)
    stats = _stats(blocked)
    assert stats["access_log.written"] == 0
    # The writer took one round's entries (at most the queue) before blocking in open();
    # the queue then filled again and everything after it was dropped.
    assert calls - 2 * queue <= stats["access_log.dropped"] <= calls - queue
    # Same bucket, or the next one up (the buckets step by 2 or 2.5).
    assert _median_us(blocked) <= _median_us(plain) * 2.5


def test_a_full_disk_is_counted_and_serving_goes_on(servers: ServerFactory) -> None:
    server = servers("--access-log", "/dev/full", "--access-log-sample", "1")
    channel, stub = _stub(server)
    with channel:
        for i in range(200):
            stub.Set(pb.SetRequest(key=b"k%d" % i, value=b"v"))
        assert stub.Get(pb.GetRequest(key=b"k7")).value == b"v"
    stats = _wait_written(server, 201)
    assert stats["access_log.written"] == 0
    assert stats["access_log.failed"] == 201
