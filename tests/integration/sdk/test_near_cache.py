"""The SDK's near cache against real servers: invalidation, lost streams, hits that stay local.

Every test runs with both clients (``connect``: a Client or a driven
AsyncClient), on one standalone node and on the shared 3-primary cluster
where it matters. Writers are separate clients without a near cache, so
the reader only learns of their writes through its Subscribe streams.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

import slotcache
from slotcache.ctl.launcher import ServerProcess
from slotcache.v1 import admin_pb2, admin_pb2_grpc
from tests.support.processes import Cluster, ServerFactory

NEAR = slotcache.NearCacheConfig(max_entries=1000)
ROUNDS = 150
# One invalidation round trip is ~0.5 ms on loopback; this only bounds a lost one.
INVALIDATION_WAIT_S = 1.0


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.002)


def op_count(address: str) -> int:
    """Operations the node has counted, of any kind."""
    with grpc.insecure_channel(address) as channel:
        reply = admin_pb2_grpc.AdminStub(channel).Info(admin_pb2.InfoRequest(), timeout=5)
    return sum(v for k, v in reply.stats.items() if k.startswith("ops."))


def cache_it(reader: Any, key: bytes) -> None:
    """Read ``key`` until the near cache serves it (the first read of a node subscribes)."""

    def hit() -> bool:
        hits = reader.stats.near_cache_hits
        reader.get(key)
        return bool(reader.stats.near_cache_hits > hits)

    wait_until(hit, what=f"{key!r} to be served by the near cache")


@pytest.fixture(params=["single", "cluster"])
def addresses(request: pytest.FixtureRequest) -> list[str]:
    if request.param == "single":
        server: ServerProcess = request.getfixturevalue("server")
        return [server.address]
    cluster: Cluster = request.getfixturevalue("cluster3")
    return list(cluster.addresses)


def test_writes_of_another_client_are_never_read_stale(
    addresses: list[str], connect: Callable[..., Any], keys: Callable[..., bytes]
) -> None:
    reader = connect(addresses, near_cache=NEAR)
    writer = connect(addresses)
    hot = [keys(f"hot{i}") for i in range(6)]  # spread over the nodes of a cluster
    for key in hot:
        writer.set(key, b"start")
        cache_it(reader, key)
    assert len(reader.near_cache.subscriptions()) == len(addresses)

    # Other threads of the reader keep reading the hot keys, so reads race the writes.
    stop = threading.Event()
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            while not stop.is_set():
                for key in hot:
                    reader.get(key)
                time.sleep(0.0001)  # hits never release the GIL: let the writer run
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    stale: list[tuple[int, Any]] = []
    try:
        for i in range(ROUNDS):
            key = hot[i % len(hot)]
            before = reader.stats.near_cache_invalidations
            writer.set(key, i)
            deadline = time.monotonic() + INVALIDATION_WAIT_S
            while reader.stats.near_cache_invalidations == before:
                if time.monotonic() > deadline:
                    break  # the key was not registered at the write: nothing stale can be held
                time.sleep(0.0002)
            got = reader.get(key)
            if got != i:
                stale.append((i, got))
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    assert not errors
    assert stale == []
    assert reader.stats.near_cache_hits > ROUNDS  # the near cache was really used
    assert reader.stats.near_cache_invalidations >= ROUNDS // 2


def test_own_writes_are_read_back_at_once(
    addresses: list[str], connect: Callable[..., Any], keys: Callable[..., bytes]
) -> None:
    client = connect(addresses, near_cache=NEAR)
    key = keys("mine")
    client.set(key, b"v0")
    cache_it(client, key)
    for i in range(20):
        client.set(key, i)
        assert client.get(key) == i
        client.delete(key)
        assert client.get(key) is None


def test_a_hit_is_counted_and_never_reaches_the_node(
    server: ServerProcess, connect: Callable[..., Any], keys: Callable[..., bytes]
) -> None:
    client = connect(server.address, near_cache=NEAR)
    key = keys("local")
    client.set(key, {"n": 1})
    cache_it(client, key)
    hits, misses = client.stats.near_cache_hits, client.stats.near_cache_misses
    ops = op_count(server.address)
    for _ in range(200):
        assert client.get(key) == {"n": 1}
    assert op_count(server.address) == ops
    assert client.stats.near_cache_hits == hits + 200
    assert client.stats.near_cache_misses == misses
    assert client.stats.operations["get"] >= 200


def test_an_expiring_key_is_not_served_after_its_ttl(
    server: ServerProcess, connect: Callable[..., Any], keys: Callable[..., bytes]
) -> None:
    client = connect(server.address, near_cache=NEAR)
    key = keys("short")
    client.set(key, b"v", ttl_ms=300)
    cache_it(client, key)
    time.sleep(0.35)
    assert client.get(key) is None


def test_a_lost_stream_flushes_and_caching_resumes_on_a_new_one(
    servers: ServerFactory, connect: Callable[..., Any], keys: Callable[..., bytes]
) -> None:
    # servers first: it is torn down after the clients close, so stopping the
    # server does not wait out its grace period for their streams.
    server = servers.start()
    client = connect(server.address, near_cache=NEAR, timeout=10.0)
    key = keys("k")
    client.set(key, b"before")
    cache_it(client, key)
    first = client.near_cache.subscriptions()[server.address]
    assert len(client.near_cache) == 1

    server.kill()  # the node crashes: its stream breaks
    wait_until(lambda: client.stats.near_cache_flushes >= 1, what="the flush")
    assert len(client.near_cache) == 0
    assert client.near_cache.subscriptions() == {}

    server.start()  # same port, empty keyspace
    writer = connect(server.address)
    writer.set(key, b"after")
    assert client.get(key) == b"after"
    cache_it(client, key)  # subscribed again, with a new id
    assert client.near_cache.subscriptions()[server.address] != first
    assert client.get(key) == b"after"
    writer.set(key, b"later")
    wait_until(lambda: client.get(key) == b"later", timeout=1.0, what="the invalidation")
