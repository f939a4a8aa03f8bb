"""The near cache's bookkeeping without any I/O: LRU, bytes, ages, placeholders, flushes.

The second half drives the sans-I/O core against the fake cluster of the
routing tests, to check what the read path sends (tracked Get + Ttl) and
how it reacts to a refused subscription.
"""

from __future__ import annotations

import grpc
import pytest

from slotcache import _commands as cmd
from slotcache._nearcache import ENTRY_OVERHEAD, NOT_CACHED, NearCache, NearCacheConfig, Ticket
from slotcache._stats import ClientStats
from slotcache.contract import key_slot
from slotcache.errors import error_for
from slotcache.v1 import cache_pb2 as pb
from tests.support.fake_cluster import A, key_for, make, run

NODE = "127.0.0.1:7000"
OTHER = "127.0.0.1:7001"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def subscribed(
    config: NearCacheConfig | None = None, addresses: tuple[str, ...] = (NODE,)
) -> tuple[NearCache, Clock]:
    clock = Clock()
    near = NearCache(config or NearCacheConfig(), ClientStats(), clock=clock)
    for address in addresses:
        near.on_message(address, pb.Invalidation(seq=1, subscription_id=f"id-{address}"))
    return near, clock


def found(value: bytes) -> pb.GetReply:
    return pb.GetReply(found=True, value=value)


def ttl(ms: int | None = None) -> pb.TtlReply:
    return pb.TtlReply(found=True, has_ttl=ms is not None, ttl_ms=ms or 0)


def read(near: NearCache, key: bytes, value: bytes, address: str = NODE, ttl_ms: int | None = None):
    """One tracked read that completes without interference."""
    ticket = near.track(key, address)
    assert ticket is not None
    near.fill(ticket, found(value), ttl(ttl_ms))


def test_nothing_is_tracked_or_cached_before_the_first_message() -> None:
    started: list[str] = []
    near = NearCache(NearCacheConfig(), on_new_node=started.append)
    assert near.track(b"k", NODE) is None
    assert near.track(b"k", NODE) is None
    assert started == [NODE]  # asked to subscribe once
    near.on_message(NODE, pb.Invalidation(seq=1, subscription_id="s1", node_id="n"))
    ticket = near.track(b"k", NODE)
    assert isinstance(ticket, Ticket) and ticket.track == "s1"
    assert near.subscriptions() == {NODE: "s1"}


def test_a_hit_returns_the_bytes_and_a_known_missing_key_is_none() -> None:
    near, _ = subscribed()
    read(near, b"k", b"v")
    ticket = near.track(b"gone", NODE)
    assert ticket is not None
    near.fill(ticket, pb.GetReply(found=False), pb.TtlReply(found=False))
    assert near.cached(b"k") == b"v"
    assert near.cached(b"gone") is None
    assert near.cached(b"other") is NOT_CACHED
    assert near.lookup(b"gone") == pb.GetReply(found=False)


def test_lru_by_entries_drops_the_least_recently_used() -> None:
    near, _ = subscribed(NearCacheConfig(max_entries=2))
    read(near, b"a", b"1")
    read(near, b"b", b"2")
    assert near.cached(b"a") == b"1"  # a is now the most recent
    read(near, b"c", b"3")
    assert near.cached(b"b") is NOT_CACHED
    assert near.cached(b"a") == b"1" and near.cached(b"c") == b"3"
    assert len(near) == 2


def test_lru_by_bytes_counts_key_value_and_overhead() -> None:
    entry = 1 + 10 + ENTRY_OVERHEAD
    near, _ = subscribed(NearCacheConfig(max_bytes=2 * entry + 5))
    read(near, b"a", b"x" * 10)
    read(near, b"b", b"x" * 10)
    assert near.size_bytes == 2 * entry
    read(near, b"c", b"x" * 10)
    assert near.cached(b"a") is NOT_CACHED
    assert len(near) == 2 and near.size_bytes == 2 * entry
    read(near, b"big", b"x" * (3 * entry))  # larger than the whole cache: not kept
    assert near.cached(b"big") is NOT_CACHED and len(near) == 2
    read(near, b"b", b"x" * 20)  # replacing an entry re-counts its bytes
    assert near.size_bytes <= 2 * entry + 5


def test_an_entry_lives_no_longer_than_max_staleness() -> None:
    near, clock = subscribed(NearCacheConfig(max_staleness_ms=1000))
    read(near, b"k", b"v")
    clock.now += 0.999
    assert near.cached(b"k") == b"v"
    clock.now += 0.002
    assert near.cached(b"k") is NOT_CACHED
    assert len(near) == 0


def test_an_entry_lives_no_longer_than_its_server_ttl_counted_from_the_send() -> None:
    near, clock = subscribed(NearCacheConfig(max_staleness_ms=60_000))
    ticket = near.track(b"k", NODE)
    assert ticket is not None
    clock.now += 0.05  # the round trip
    near.fill(ticket, found(b"v"), ttl(200))
    clock.now += 0.14
    assert near.cached(b"k") == b"v"
    clock.now += 0.02  # 210 ms after the read was sent
    assert near.cached(b"k") is NOT_CACHED


def test_a_reply_that_disagrees_with_its_ttl_is_not_cached() -> None:
    near, _ = subscribed()
    ticket = near.track(b"k", NODE)
    assert ticket is not None
    near.fill(ticket, found(b"v"), pb.TtlReply(found=False))  # deleted in between
    assert near.cached(b"k") is NOT_CACHED


def test_an_invalidation_during_the_read_voids_the_placeholder() -> None:
    near, _ = subscribed()
    ticket = near.track(b"k", NODE)
    assert ticket is not None
    near.on_message(NODE, pb.Invalidation(seq=2, keys=[b"k"]))
    near.fill(ticket, found(b"old"), ttl())
    assert near.cached(b"k") is NOT_CACHED
    assert near.stats.near_cache_invalidations == 1
    read(near, b"k", b"new")  # the next read is cached again
    assert near.cached(b"k") == b"new"


def test_an_invalidation_after_the_fill_drops_the_entry() -> None:
    near, _ = subscribed()
    read(near, b"k", b"v")
    read(near, b"j", b"w")
    near.on_message(NODE, pb.Invalidation(seq=2, keys=[b"k", b"unknown"]))
    assert near.cached(b"k") is NOT_CACHED and near.cached(b"j") == b"w"
    assert near.stats.near_cache_invalidations == 2


def test_a_local_write_drops_the_key_and_voids_reads_in_flight() -> None:
    near, _ = subscribed()
    read(near, b"k", b"v")
    ticket = near.track(b"j", NODE)
    assert ticket is not None
    near.invalidate([b"k", b"j"])
    near.fill(ticket, found(b"old"), ttl())
    assert near.cached(b"k") is NOT_CACHED and near.cached(b"j") is NOT_CACHED


def test_a_sequence_gap_flushes_that_node_only() -> None:
    near, _ = subscribed(addresses=(NODE, OTHER))
    read(near, b"a", b"1", NODE)
    read(near, b"b", b"2", OTHER)
    in_flight = near.track(b"c", NODE)
    assert in_flight is not None
    near.on_message(NODE, pb.Invalidation(seq=2))
    near.on_message(NODE, pb.Invalidation(seq=4))  # 3 is missing
    assert near.stats.near_cache_flushes == 1
    assert near.cached(b"a") is NOT_CACHED and near.cached(b"b") == b"2"
    near.fill(in_flight, found(b"3"), ttl())  # read before the flush: not cached
    assert near.cached(b"c") is NOT_CACHED
    near.on_message(NODE, pb.Invalidation(seq=5))  # in step again: no flush
    assert near.stats.near_cache_flushes == 1
    read(near, b"a", b"1", NODE)
    assert near.cached(b"a") == b"1"


def test_a_flush_message_drops_everything_from_that_node() -> None:
    near, _ = subscribed()
    read(near, b"a", b"1")
    near.on_message(NODE, pb.Invalidation(seq=2, flush=True))
    assert len(near) == 0 and near.size_bytes == 0
    assert near.stats.near_cache_flushes == 1
    assert near.subscriptions() == {NODE: f"id-{NODE}"}  # the subscription stays


def test_a_lost_stream_flushes_and_stops_tracking_until_a_new_subscription() -> None:
    near, _ = subscribed()
    read(near, b"a", b"1")
    in_flight = near.track(b"b", NODE)
    assert in_flight is not None
    near.lost(NODE)
    assert len(near) == 0 and near.stats.near_cache_flushes == 1
    assert near.track(b"a", NODE) is None
    near.fill(in_flight, found(b"2"), ttl())
    assert len(near) == 0
    near.lost(NODE)  # failing to resubscribe again and again counts once
    assert near.stats.near_cache_flushes == 1
    near.on_message(NODE, pb.Invalidation(seq=1, subscription_id="new"))
    ticket = near.track(b"a", NODE)
    assert ticket is not None and ticket.track == "new"


def test_slots_in_a_message_drop_that_nodes_keys_of_those_slots() -> None:
    near, _ = subscribed(addresses=(NODE, OTHER))
    moving, staying = b"moving-key", b"staying-key"
    slot = key_slot(moving)
    assert key_slot(staying) != slot
    read(near, moving, b"1", NODE)
    read(near, staying, b"2", NODE)
    in_flight = near.track(moving, NODE)
    assert in_flight is not None
    near.on_message(NODE, pb.Invalidation(seq=2, slots=[pb.SlotRange(start=slot, end=slot)]))
    assert near.cached(moving) is NOT_CACHED and near.cached(staying) == b"2"
    near.fill(in_flight, found(b"1"), ttl())
    assert near.cached(moving) is NOT_CACHED


def test_forget_resets_only_the_refused_subscription() -> None:
    kicked: list[str] = []
    near, _ = subscribed()
    near.on_forget = kicked.append
    read(near, b"a", b"1")
    near.forget(NODE, "some-older-id")
    assert len(near) == 1 and kicked == []
    near.forget(NODE, f"id-{NODE}")
    assert len(near) == 0 and kicked == [NODE] and near.subscriptions() == {}


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        NearCacheConfig(max_entries=0)
    with pytest.raises(ValueError):
        NearCacheConfig(max_staleness_ms=0)
    with pytest.raises(ValueError):
        NearCacheConfig(mode="prefix")  # type: ignore[arg-type]
    assert NearCacheConfig(mode="broadcast").subscribe_request().mode == (
        pb.TRACKING_MODE_BROADCAST
    )


# ---- the core's read path, against the fake cluster ---------------------------------------


def test_a_tracked_read_sends_get_and_ttl_together_under_the_subscription() -> None:
    core, cluster, driver = make()
    near = NearCache(NearCacheConfig(), core.stats)
    core.near_cache = near
    key = key_for(A, "tracked")
    run(driver, cmd.set_(key, b"v"))
    assert run(driver, cmd.get(key)) == b"v"  # no subscription yet: untracked, not cached
    assert len(near) == 0 and cluster.calls[-1].track is None
    near.on_message(A, pb.Invalidation(seq=1, subscription_id="sub"))
    steps = len(driver.steps)
    assert run(driver, cmd.get(key)) == b"v"
    (step,) = driver.steps[steps:]
    assert [(c.rpc, c.track) for c in step] == [("Get", "sub"), ("Ttl", "sub")]  # type: ignore[union-attr]
    assert len(near) == 1


def test_a_refused_subscription_is_dropped_and_the_read_resent_untracked() -> None:
    core, cluster, driver = make()
    kicked: list[str] = []
    near = NearCache(NearCacheConfig(), core.stats, on_forget=kicked.append)
    core.near_cache = near
    key = key_for(A, "refused")
    run(driver, cmd.set_(key, b"v"))
    near.on_message(A, pb.Invalidation(seq=1, subscription_id="stale"))
    refused = error_for(grpc.StatusCode.FAILED_PRECONDITION, "no such id", "NO_SUBSCRIPTION")
    cluster.fail(A, refused, refused)  # the Get and the Ttl of one message
    assert run(driver, cmd.get(key)) == b"v"
    assert [c.track for c in cluster.calls[-3:]] == ["stale", "stale", None]
    assert kicked == [A] and near.subscriptions() == {} and len(near) == 0
    assert core.stats.faults == {}
