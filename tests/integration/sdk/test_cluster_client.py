"""The Python SDK against real three-node clusters: smart routing, MOVED, splitting, proxy, retries.

Most tests run once per client (``connect`` makes a Client or a driven
AsyncClient). Placement is checked independently of the SDK: a plain stub
asks the expected owner with redirects on, so a key on the wrong node fails
the check with MOVED instead of being forwarded.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

import slotcache
from slotcache import key_slot
from slotcache.ctl.launcher import free_port
from slotcache.v1 import admin_pb2, admin_pb2_grpc, cache_pb2, cache_pb2_grpc
from tests.support.nodes import eventually
from tests.support.processes import Cluster, ServerFactory

REDIRECT = (("slotcache-redirect", "1"),)
RPC_TIMEOUT = 5.0


# ---- helpers: independent of the SDK ------------------------------------------------------


def topology(address: str) -> cache_pb2.TopologyReply:
    with grpc.insecure_channel(address) as channel:
        stub = cache_pb2_grpc.CacheStub(channel)
        return stub.Topology(cache_pb2.TopologyRequest(), timeout=RPC_TIMEOUT)


def owner_table(address: str) -> list[str | None]:
    """The owner of every slot, as the node at ``address`` sees it."""
    owners: list[str | None] = [None] * 16384
    for node in topology(address).nodes:
        for r in node.slots:
            owners[r.start : r.end + 1] = [node.address] * (r.end - r.start + 1)
    return owners


def key_owned_by(owners: Sequence[str | None], address: str, prefix: bytes) -> bytes:
    """A key starting with ``prefix`` whose slot ``address`` owns."""
    i = 0
    while True:
        key = prefix + b"-%d" % i
        if owners[key_slot(key)] == address:
            return key
        i += 1


def held_by(address: str, key: bytes) -> bytes | None:
    """Read ``key`` on the node at ``address`` only: MOVED (an RpcError) if it does not own it."""
    with grpc.insecure_channel(address) as channel:
        stub = cache_pb2_grpc.CacheStub(channel)
        reply = stub.Get(cache_pb2.GetRequest(key=key), timeout=RPC_TIMEOUT, metadata=REDIRECT)
    return reply.value if reply.found else None


def claim_slot(address: str, slot: int) -> int:
    """Admin.ClaimSlots on ``address`` for one slot; returns the new config epoch."""
    with grpc.insecure_channel(address) as channel:
        admin = admin_pb2_grpc.AdminStub(channel)
        ranges = [cache_pb2.SlotRange(start=slot, end=slot)]
        reply = admin.ClaimSlots(admin_pb2.ClaimSlotsRequest(ranges=ranges), timeout=RPC_TIMEOUT)
    return int(reply.config_epoch)


def keys_on_every_node(
    cluster: Cluster, keys: Callable[[str], bytes], per_node: int = 2
) -> dict[str, list[bytes]]:
    owners = owner_table(cluster.addresses[0])
    return {
        address: [key_owned_by(owners, address, keys(f"n{n}k{i}")) for i in range(per_node)]
        for n, address in enumerate(cluster.addresses)
    }


def routing_counters(c: Any) -> dict[str, float]:
    stats = c.stats.as_dict()
    return {k: stats[k] for k in ("redirects", "refreshes", "refresh_failures", "retries")}


# ---- smart routing -----------------------------------------------------------------------


def test_smart_client_sends_every_key_straight_to_its_owner(
    cluster3: Cluster, connect: Callable[..., Any], keys: Callable[..., bytes]
) -> None:
    c = connect(cluster3.addresses[0])
    assert c.routing == "smart"
    by_node = keys_on_every_node(cluster3, keys, per_node=3)
    for address, node_keys in by_node.items():
        for key in node_keys:
            assert c.set(key, b"v:" + key) is True
            assert c.get(key) == b"v:" + key
            assert c.owner_of(key) == address
            assert held_by(address, key) == b"v:" + key  # really stored on the owner
    counter, ttl_key, gone = (node_keys[0] for node_keys in by_node.values())
    assert c.incr(counter + b"n", 5) == 5
    assert c.expire(ttl_key, 60_000) is True
    assert 0 < c.ttl(ttl_key) <= 60_000
    assert c.exists(gone) is True
    assert c.delete(gone) is True
    assert c.exists(gone) is False
    # Normal traffic to all three nodes: one map load, no redirect, no retry.
    assert routing_counters(c) == {
        "redirects": 0,
        "refreshes": 1,
        "refresh_failures": 0,
        "retries": 0,
    }


def test_mget_mset_mdelete_across_all_three_nodes(
    cluster3: Cluster, connect: Callable[..., Any], keys: Callable[..., bytes]
) -> None:
    c = connect(cluster3.addresses[1])
    by_node = keys_on_every_node(cluster3, keys, per_node=3)
    (a1, a2, a3), (b1, b2, b3), (c1, c2, c3) = by_node.values()
    items = {k: b"value-of-" + k for k in (a1, b1, c1, a2, b2, c2, c3)}
    assert c.mset(items) is None
    for address, node_keys in by_node.items():
        for key in node_keys:
            if key in items:
                assert held_by(address, key) == items[key]

    missing = keys("missing")
    order = [c3, a1, missing, b2, a1, c1, b1, a3, c2, a2]
    expected = [items.get(k) for k in order]
    assert expected.count(None) == 2
    assert c.mget(order) == expected
    assert c.mget(reversed(order)) == expected[::-1]

    assert c.mset([(a3, b"A3"), (b3, b"B3")], ttl_ms=60_000) is None
    assert 0 < c.ttl(b3) <= 60_000
    assert c.mdelete([a1, b1, c1, missing, a3, b3]) == 5
    assert c.mget([a1, b1, c1, a3, b3, a2]) == [None, None, None, None, None, items[a2]]
    assert held_by(cluster3.addresses[0], a1) is None
    assert c.stats.redirects == 0
    assert c.stats.retries == 0


def test_split_write_with_an_empty_key_writes_nothing(
    cluster3: Cluster, connect: Callable[..., Any], keys: Callable[..., bytes]
) -> None:
    c = connect(cluster3.addresses[0])
    by_node = keys_on_every_node(cluster3, keys, per_node=1)
    first, second, third = (ks[0] for ks in by_node.values())
    with pytest.raises(slotcache.InvalidArgument):
        c.mset({first: b"1", b"": b"x", third: b"3"})
    with pytest.raises(slotcache.InvalidArgument):
        c.mdelete([first, second, b""])
    assert c.mget([first, second, third]) == [None, None, None]


def test_seed_list_may_start_with_a_dead_address(
    cluster3: Cluster, connect: Callable[..., Any], keys: Callable[..., bytes]
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    c = connect([dead, cluster3.addresses[2]])
    by_node = keys_on_every_node(cluster3, keys, per_node=1)
    all_keys = [ks[0] for ks in by_node.values()]
    c.mset({k: k for k in all_keys})
    assert c.mget(all_keys) == all_keys
    assert c.stats.refreshes == 1
    assert c.stats.redirects == 0
    # The map names every node; the dead seed is not among the owners.
    assert {c.owner_of(k) for k in all_keys} == set(cluster3.addresses)


def test_comma_separated_seeds(
    cluster3: Cluster, connect: Callable[..., Any], keys: Callable[..., bytes]
) -> None:
    c = connect(",".join(cluster3.addresses))
    assert c.set(keys("k"), b"v") is True
    assert c.get(keys("k")) == b"v"


# ---- proxy mode -------------------------------------------------------------------------


def test_proxy_mode_reaches_every_node_through_one(
    cluster3: Cluster, connect: Callable[..., Any], keys: Callable[..., bytes]
) -> None:
    proxy = cluster3.addresses[1]
    c = connect(proxy, routing="proxy")
    assert c.routing == "proxy"
    by_node = keys_on_every_node(cluster3, keys, per_node=2)
    for address, node_keys in by_node.items():
        for key in node_keys:
            assert c.owner_of(key) == proxy
            assert c.set(key, b"p:" + key) is True
            assert c.get(key) == b"p:" + key
            assert held_by(address, key) == b"p:" + key  # forwarded to the real owner
    all_keys = [k for ks in by_node.values() for k in ks]
    assert c.mget(all_keys[::-1]) == [b"p:" + k for k in all_keys[::-1]]
    assert c.incr(all_keys[0] + b"n") == 1
    assert c.mdelete(all_keys) == len(all_keys)
    # No map, no redirect: the proxy node did the routing.
    assert routing_counters(c) == {
        "redirects": 0,
        "refreshes": 0,
        "refresh_failures": 0,
        "retries": 0,
    }


# ---- MOVED ------------------------------------------------------------------------------


def test_moved_only_after_the_map_changes_then_followed_and_learned(
    servers: ServerFactory, connect: Callable[..., Any]
) -> None:
    cluster = Cluster.start(servers)
    a0, a1, a2 = cluster.addresses
    c = connect(a0)
    owners = owner_table(a0)
    everywhere = [key_owned_by(owners, a, b"warm-%d" % i) for i, a in enumerate((a0, a1, a2))]
    moving = key_owned_by(owners, a0, b"moving")
    staying = next(
        k
        for k in (key_owned_by(owners, a0, b"staying-%d" % i) for i in range(100))
        if key_slot(k) != key_slot(moving)
    )
    slot = key_slot(moving)

    for key in [*everywhere, moving, staying]:
        assert c.set(key, b"before")
        assert c.get(key) == b"before"
    assert c.stats.redirects == 0
    assert c.stats.refreshes == 1

    # Node 1 claims the slot: a new config epoch; node 0 drops the slot's keys.
    claim_slot(a1, slot)
    assert eventually(
        lambda: all(owner_table(a)[slot] == a1 for a in cluster.addresses),
        timeout=15.0,
        interval=0.05,
    )
    assert eventually(
        lambda: all(topology(a).cluster_ok for a in cluster.addresses), timeout=15.0, interval=0.05
    )
    assert c.owner_of(moving) == a0  # the client has not heard yet

    assert c.get(moving) is None  # MOVED by node 0, followed to node 1, which never had it
    assert c.stats.redirects == 1
    assert c.owner_of(moving) == a1  # the map entry was patched at once

    assert c.set(moving, b"after") is True
    assert c.get(moving) == b"after"
    assert held_by(a1, moving) == b"after"
    for key in [*everywhere, staying]:
        assert c.get(key) == b"before"
    assert c.mget([moving, staying, *everywhere]) == [
        b"after",
        b"before",
        b"before",
        b"before",
        b"before",
    ]
    assert c.stats.redirects == 1  # no further redirect for that slot, nor for any other
    # The MOVED also asked for a background refresh of the whole map.
    assert eventually(lambda: c.stats.refreshes >= 2, timeout=5), c.stats
    assert c.owner_of(moving) == a1
    assert c.stats.redirects == 1


# ---- UNAVAILABLE --------------------------------------------------------------------------


def test_dead_node_reads_retry_within_the_deadline_then_succeed_once_it_is_back(
    servers: ServerFactory, connect: Callable[..., Any]
) -> None:
    cluster = Cluster.start(servers)
    a0, _, a2 = cluster.addresses
    c = connect(a0, timeout=30)
    owners = owner_table(a0)
    key = key_owned_by(owners, a2, b"dead")
    counter = key_owned_by(owners, a2, b"counter")
    assert c.set(key, b"v") is True
    assert c.get(key) == b"v"
    refreshes = c.stats.refreshes

    cluster.nodes[2].kill()
    # An idempotent read is retried (refresh, backoff) until its deadline, then raised.
    started = time.monotonic()
    with pytest.raises(slotcache.Unavailable):
        c.get(key, timeout=1.5)
    elapsed = time.monotonic() - started
    assert 0.3 < elapsed < 2.5, elapsed
    assert c.stats.retries >= 3
    assert c.stats.refreshes > refreshes  # each retry round refreshed the map
    retries = c.stats.retries

    # The node comes back while calls are retrying: they succeed. Incr is not
    # idempotent, but a refused connection means it was never sent, so it may
    # be resent too.
    reviver = threading.Timer(0.3, cluster.nodes[2].start)
    reviver.start()
    try:
        assert c.incr(counter, 7) == 7
        assert c.stats.retries > retries
        assert c.get(key) is None  # a killed node loses what it held
        assert c.get(counter) == b"7"
    finally:
        reviver.join()
    assert held_by(a2, counter) == b"7"
    assert c.stats.redirects == 0


def test_incr_is_not_resent_after_it_was_sent_but_get_is(servers: ServerFactory) -> None:
    cluster = Cluster.start(servers)
    a0, _, a2 = cluster.addresses
    owners = owner_table(a0)
    key = key_owned_by(owners, a2, b"inflight")
    writer = slotcache.Client(a0, timeout=30)
    reader = slotcache.Client(a0, timeout=30)
    try:
        assert writer.incr(key) == 1
        assert reader.get(key) == b"1"
        outcome: dict[str, object] = {}

        def run(name: str, call: Callable[[], object]) -> None:
            try:
                outcome[name] = call()
            except BaseException as exc:
                outcome[name] = exc

        node = cluster.nodes[2]
        node.send_signal(signal.SIGSTOP)  # both calls reach the node and hang there
        threads = [
            threading.Thread(target=run, args=("incr", lambda: writer.incr(key))),
            threading.Thread(target=run, args=("get", lambda: reader.get(key))),
        ]
        for t in threads:
            t.start()
        time.sleep(0.5)
        assert outcome == {}
        node.kill()  # the connection breaks with both requests sent
        node.start()
        for t in threads:
            t.join(40)

        # The incr may or may not have run: it is raised, not resent.
        assert isinstance(outcome["incr"], slotcache.Unavailable), outcome
        assert not isinstance(outcome["incr"], slotcache.ClusterDown)
        assert writer.stats.retries == 0
        # The read is resent (the node lost its keys when it was killed).
        assert outcome["get"] is None, outcome
        assert reader.stats.retries >= 1
    finally:
        writer.close()
        reader.close()
        cluster.nodes[2].send_signal(signal.SIGCONT)


def test_unreachable_seed_fails_fast(connect: Callable[..., Any]) -> None:
    c = connect(f"127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(slotcache.Unavailable):
        c.get(b"k")
    assert time.monotonic() - started < 2
    assert c.stats.refresh_failures == 1
    assert c.stats.retries == 0


# ---- concurrency ------------------------------------------------------------------------


async def test_async_client_sends_split_parts_concurrently_and_loads_the_map_once(
    cluster3: Cluster, keys: Callable[..., bytes]
) -> None:
    by_node = keys_on_every_node(cluster3, keys, per_node=2)
    all_keys = [k for ks in by_node.values() for k in ks]
    async with slotcache.AsyncClient(cluster3.addresses[2]) as c:
        # Fifty callers at once on a fresh client share one Topology round.
        results = await asyncio.gather(*(c.get(k) for k in all_keys * 10))
        assert results == [None] * len(all_keys) * 10
        assert c.stats.refreshes == 1
        # ... and their reads left in one message per node.
        assert c.stats.pipeline_messages == 3
        await c.mset({k: k[::-1] for k in all_keys})
        messages = c.stats.pipeline_messages
        assert await c.mget(all_keys[::-1]) == [k[::-1] for k in all_keys[::-1]]
        # One part per node, all sent in the same step.
        assert c.stats.pipeline_messages == messages + 3
        assert c.stats.redirects == 0


def test_blocking_client_shared_by_threads_loads_the_map_once(
    cluster3: Cluster, keys: Callable[..., bytes]
) -> None:
    by_node = keys_on_every_node(cluster3, keys, per_node=4)
    all_keys = [k for ks in by_node.values() for k in ks]
    with slotcache.Client(cluster3.addresses[0]) as c:
        with ThreadPoolExecutor(max_workers=12) as pool:
            assert list(pool.map(lambda k: c.set(k, k), all_keys)) == [True] * len(all_keys)
            assert list(pool.map(c.get, all_keys)) == all_keys
        assert c.stats.refreshes == 1
        assert c.stats.redirects == 0
