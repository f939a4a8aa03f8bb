"""Tracking mode on a real server: what a tracked read earns, once, for every kind of change."""

from __future__ import annotations

import time

import grpc
import pytest

from slotcache.v1 import admin_pb2
from slotcache.v1 import cache_pb2 as pb
from tests.support.nodes import RPC_TIMEOUT, expect_failure, wait_for
from tests.support.streams import Pipeline


def tracking_stats(node) -> dict[str, int]:
    stats = node.admin.Info(admin_pb2.InfoRequest(), timeout=RPC_TIMEOUT).stats
    return {k: v for k, v in stats.items() if k.startswith("tracking.")}


def test_a_write_by_another_client_invalidates_a_read_key_exactly_once(
    server, node, open_stubs, subscribe, keys
):
    sub = subscribe(node.cache)
    other = open_stubs(server.address)
    key, sentinel = keys("k"), keys("sentinel")
    other.set(key, b"v1")
    assert node.get(key, sub.metadata) == b"v1"
    assert node.get(sentinel, sub.metadata) is None
    other.set(key, b"v2")
    message = sub.next()
    assert message.seq == 2 and list(message.keys) == [key]
    assert not message.flush and not message.slots
    # Not read since: further writes earn nothing; the sentinel's proves the stream is live.
    other.set(key, b"v3")
    other.cache.Delete(pb.DeleteRequest(key=key), timeout=RPC_TIMEOUT)
    other.set(sentinel, b"x")
    message = sub.next()
    assert message.seq == 3 and list(message.keys) == [sentinel]
    # Read again, tracked again.
    assert node.get(key, sub.metadata) is None
    other.set(key, b"v4")
    assert list(sub.next().keys) == [key]
    sub.quiet()


def test_untracked_reads_register_nothing(node, subscribe, keys):
    sub = subscribe(node.cache)
    key = keys("k")
    node.get(key)  # no slotcache-track
    node.set(key, b"v")
    sub.quiet()


@pytest.mark.parametrize("rpc", ["MGet", "Exists", "Ttl", "Pipeline"])
def test_every_read_rpc_tracks(rpc, server, node, open_stubs, subscribe, keys):
    sub = subscribe(node.cache)
    a, b = keys("a"), keys("b")
    if rpc == "MGet":
        node.cache.MGet(pb.MGetRequest(keys=[a, b]), timeout=RPC_TIMEOUT, metadata=sub.metadata)
    elif rpc == "Exists":
        for key in (a, b):
            node.cache.Exists(pb.ExistsRequest(key=key), timeout=RPC_TIMEOUT, metadata=sub.metadata)
    elif rpc == "Ttl":
        for key in (a, b):
            node.cache.Ttl(pb.TtlRequest(key=key), timeout=RPC_TIMEOUT, metadata=sub.metadata)
    else:
        stream = Pipeline(node.cache, sub.metadata)
        results = stream.send(
            pb.Operation(id=1, get=pb.GetRequest(key=a)),
            pb.Operation(id=2, mget=pb.MGetRequest(keys=[b])),
        )
        assert [r.id for r in results] == [1, 2]
        stream.close()
    writer = open_stubs(server.address)
    writer.cache.MSet(
        pb.MSetRequest(entries=[pb.SetRequest(key=k, value=b"v") for k in (a, b)]),
        timeout=RPC_TIMEOUT,
    )
    assert sorted(sub.keys_until([a, b])) == sorted([a, b])


def test_delete_and_ttl_changes_invalidate(node, subscribe, keys):
    sub = subscribe(node.cache)
    deleted, expiring = keys("deleted"), keys("expiring")
    node.set(deleted, b"v")
    node.set(expiring, b"v")
    for key in (deleted, expiring):
        node.get(key, sub.metadata)
    node.cache.Delete(pb.DeleteRequest(key=deleted), timeout=RPC_TIMEOUT)
    assert list(sub.next().keys) == [deleted]
    node.cache.Expire(pb.ExpireRequest(key=expiring, ttl_ms=60_000), timeout=RPC_TIMEOUT)
    assert list(sub.next().keys) == [expiring]


def test_expiry_by_the_sampler_invalidates(node, subscribe, keys):
    sub = subscribe(node.cache)
    key = keys("short")
    node.cache.Set(pb.SetRequest(key=key, value=b"v", ttl_ms=200), timeout=RPC_TIMEOUT)
    assert node.get(key, sub.metadata) == b"v"
    # Nobody touches the key: only the active sampler can remove it.
    assert list(sub.next(timeout=5).keys) == [key]


def test_expiry_found_by_a_lazy_read_invalidates(servers, open_stubs, subscribe, keys):
    # A sampler that (almost) never runs, so the lazy path is the one that expires.
    server = servers.start("--expire-hz", "0.01")
    reader = open_stubs(server.address)
    sub = subscribe(reader.cache)
    key = keys("lazy")
    reader.cache.Set(pb.SetRequest(key=key, value=b"v", ttl_ms=100), timeout=RPC_TIMEOUT)
    assert reader.get(key, sub.metadata) == b"v"
    time.sleep(0.15)
    other = open_stubs(server.address)
    assert other.get(key) is None
    assert list(sub.next().keys) == [key]


def test_eviction_invalidates(servers, open_stubs, subscribe, keys):
    server = servers.start("--maxmemory", "1mb", "--maxmemory-policy", "allkeys-lru")
    node = open_stubs(server.address)
    sub = subscribe(node.cache)
    victim = keys("victim")
    node.set(victim, b"x" * 1000)
    node.get(victim, sub.metadata)
    # Fill until the victim is evicted (LRU is sampled, so it may take more than 1 MiB).
    for batch in range(100):
        entries = [
            pb.SetRequest(key=keys(f"fill{batch}-{i}"), value=b"x" * 1000) for i in range(100)
        ]
        node.cache.MSet(pb.MSetRequest(entries=entries), timeout=RPC_TIMEOUT)
        if not node.cache.Exists(pb.ExistsRequest(key=victim), timeout=RPC_TIMEOUT).exists:
            break
    assert node.get(victim) is None
    assert int(node.admin.Info(admin_pb2.InfoRequest(), timeout=RPC_TIMEOUT).stats["evicted"]) > 0
    assert victim in sub.keys_until([victim])
    assert tracking_stats(node)["tracking.keys"] == 0


def test_a_subscription_that_is_not_open_fails_tracked_reads(node, keys):
    failure = expect_failure(lambda: node.get(keys("k"), (("slotcache-track", "no-such-id"),)))
    assert failure.code == grpc.StatusCode.FAILED_PRECONDITION
    assert failure.reason == "NO_SUBSCRIPTION"
    stream = Pipeline(node.cache, (("slotcache-track", "no-such-id"),))
    with pytest.raises(grpc.RpcError) as info:
        stream.send(pb.Operation(id=1, get=pb.GetRequest(key=keys("k"))))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_a_pipeline_stops_before_its_next_batch_once_the_subscription_ends(node, subscribe, keys):
    sub = subscribe(node.cache)
    stream = Pipeline(node.cache, sub.metadata)
    assert stream.send(pb.Operation(id=1, get=pb.GetRequest(key=keys("a"))))[0].id == 1
    sub.cancel()
    wait_for(lambda: tracking_stats(node)["tracking.subscribers"] == 0, 5, "the stream to end")
    written = keys("not-written")
    with pytest.raises(grpc.RpcError) as info:
        stream.send(pb.Operation(id=2, set=pb.SetRequest(key=written, value=b"v")))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert node.get(written) is None  # nothing of the refused batch ran


def test_bad_subscribe_requests_are_refused(node):
    for request in (
        pb.SubscribeRequest(slots=[pb.SlotRange(start=1, end=2)]),  # slots in keys mode
        pb.SubscribeRequest(mode=pb.TRACKING_MODE_BROADCAST, slots=[pb.SlotRange(start=5, end=2)]),
        pb.SubscribeRequest(mode=pb.TRACKING_MODE_BROADCAST, slots=[pb.SlotRange(end=16384)]),
        pb.SubscribeRequest(mode=7),
    ):
        with pytest.raises(grpc.RpcError) as info:
            next(node.cache.Subscribe(request, timeout=RPC_TIMEOUT))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request


def test_cancelled_streams_leave_no_tracking_state(servers, open_stubs, subscribe, keys):
    server = servers.start()
    node = open_stubs(server.address)
    subs = [subscribe(node.cache) for _ in range(3)]
    broadcast = subscribe(node.cache, pb.TRACKING_MODE_BROADCAST)
    reply = node.cache.MGet(
        pb.MGetRequest(keys=[keys(f"k{i}") for i in range(20_000)]),
        timeout=RPC_TIMEOUT,
        metadata=subs[0].metadata,
    )
    assert len(reply.results) == 20_000
    for sub in subs[1:]:
        node.get(keys("k1"), sub.metadata)
    stats = tracking_stats(node)
    assert stats["tracking.subscribers"] == 4
    assert stats["tracking.subscribers.broadcast"] == 1
    assert stats["tracking.keys"] == 20_002
    for sub in [*subs, broadcast]:
        sub.cancel()
    wait_for(
        lambda: (
            (s := tracking_stats(node))["tracking.subscribers"] == 0 and s["tracking.keys"] == 0
        ),
        5,
        "tracking state to be released",
    )
    # The departed subscriptions' ids are gone too.
    failure = expect_failure(lambda: node.get(keys("k1"), subs[1].metadata))
    assert failure.reason == "NO_SUBSCRIPTION"


def test_shutdown_ends_streams_promptly_with_unavailable(servers, open_stubs, subscribe):
    server = servers.start("--shutdown-grace", "10")
    node = open_stubs(server.address)
    sub = subscribe(node.cache)
    started = time.monotonic()
    server.stop()
    assert sub.ended() == grpc.StatusCode.UNAVAILABLE
    # The stream did not hold the 10 s drain.
    assert time.monotonic() - started < 5


def test_tracking_limit_evicts_registrations_with_invalidations(
    servers, open_stubs, subscribe, keys
):
    server = servers.start("--tracking-max-keys-per-subscriber", "64")
    node = open_stubs(server.address)
    sub = subscribe(node.cache)
    read = [keys(f"k{i:03}") for i in range(100)]
    for key in read:
        node.get(key, sub.metadata)
    evicted = sub.keys_until(read[:36])
    assert evicted == read[: len(evicted)]  # the oldest registrations went first
    stats = tracking_stats(node)
    assert stats["tracking.keys"] <= 64
    assert stats["tracking.evictions"] == len(evicted)
    # What is still registered is invalidated on change; what was evicted is not again.
    node.cache.MSet(
        pb.MSetRequest(entries=[pb.SetRequest(key=k, value=b"v") for k in read]),
        timeout=RPC_TIMEOUT,
    )
    rest = sub.keys_until(read[len(evicted) :])
    assert sorted(rest) == read[len(evicted) :]
