"""The SDK's routing logic without a network: slots, the slot map, MOVED, splitting, retries.

The core is sans-I/O, so these tests drive its plans with a fake cluster that
answers calls the way real nodes do (serve owned slots, MOVED otherwise) and
a fake clock that only moves when the plan sleeps.
"""

from __future__ import annotations

import random

import grpc
import pytest

import slotcache
from slotcache import _commands as cmd
from slotcache._core import Call, ClientCore, Refresh, Sleep
from slotcache._nearcache import NearCache, NearCacheConfig
from slotcache._retry import RetryPolicy, never_sent, retryable
from slotcache._routing import (
    Redirect,
    check_before_split,
    group_by_owner,
    parse_moved,
)
from slotcache._slotmap import SlotMap
from slotcache.contract import SLOT_COUNT, hash_tag, key_slot
from slotcache.errors import SlotcacheError, error_for
from slotcache.v1 import cache_pb2 as pb
from tests.support.fake_cluster import (
    BROKEN,
    REFUSED,
    A,
    B,
    C,
    Driver,
    FakeCluster,
    key_for,
    make,
    run,
    unavailable,
)

# ---- slots -----------------------------------------------------------------------------


def test_key_slot_matches_redis() -> None:
    # Values from Redis's CLUSTER KEYSLOT and the spec's CRC16 check value.
    assert key_slot(b"foo") == 12182
    assert key_slot(b"bar") == 5061
    assert key_slot(b"hello") == 866
    assert key_slot(b"123456789") == 0x31C3 % SLOT_COUNT


def test_hash_tags_follow_the_spec() -> None:
    assert key_slot(b"{user1000}.following") == key_slot(b"{user1000}.followers")
    assert hash_tag(b"foo{}{bar}") == b"foo{}{bar}"  # empty first tag: the whole key
    assert hash_tag(b"foo{{bar}}zap") == b"{bar"
    assert hash_tag(b"foo{bar}{zap}") == b"bar"
    assert hash_tag(b"{bar") == b"{bar"
    assert slotcache.key_slot is key_slot


# ---- the slot map ----------------------------------------------------------------------


def topology(*nodes: tuple[str, list[tuple[int, int]], int], epoch: int = 9) -> pb.TopologyReply:
    reply = pb.TopologyReply(epoch=epoch, cluster_ok=True, responder_id="n0")
    for i, (address, ranges, config_epoch) in enumerate(nodes):
        node = reply.nodes.add(
            id=f"n{i}", address=address, role=pb.ROLE_PRIMARY, config_epoch=config_epoch
        )
        for start, end in ranges:
            node.slots.add(start=start, end=end)
    return reply


def test_slot_map_from_topology() -> None:
    reply = topology((A, [(0, 99), (200, 299)], 1), (B, [(100, 199)], 2))
    replica = reply.nodes.add(id="r", address="10.0.0.9:7000", role=pb.ROLE_REPLICA)
    replica.primary_id = "n0"
    smap = SlotMap.from_topology(reply, dialed="seed:1")
    assert [smap.owner(s) for s in (0, 99, 100, 199, 200, 299, 300)] == [A, A, B, B, A, A, None]
    assert smap.assigned() == 300
    assert smap.epoch == 9
    assert smap.addresses() == [A, B, "10.0.0.9:7000"]
    assert [n.primary for n in smap.nodes] == [True, True, False]


def test_slot_map_higher_config_epoch_wins_a_disputed_slot() -> None:
    # Listed first but newer: B's claim must win whatever the order of nodes.
    reply = topology((B, [(50, 60)], 7), (A, [(0, 99)], 3))
    smap = SlotMap.from_topology(reply, dialed=A)
    assert smap.owner(49) == A
    assert smap.owner(50) == B
    assert smap.owner(60) == B
    assert smap.owner(61) == A


def test_slot_map_of_a_standalone_server_uses_the_dialed_address() -> None:
    reply = pb.TopologyReply(epoch=0, cluster_ok=True, responder_id="me")
    reply.nodes.add(id="me", address="0.0.0.0:7000", slots=[pb.SlotRange(start=0, end=16383)])
    smap = SlotMap.from_topology(reply, dialed="cache.example:7000")
    assert smap.owner(0) == smap.owner(16383) == "cache.example:7000"


def test_slot_map_ignores_ranges_out_of_bounds() -> None:
    smap = SlotMap.from_topology(topology((A, [(0, 9), (16000, 16384), (9, 3)], 1)), A)
    assert smap.assigned() == 10


def test_apply_moved_patches_one_slot_and_never_lowers_the_epoch() -> None:
    smap = SlotMap.from_topology(topology((A, [(0, 16383)], 1), epoch=5), A)
    smap.apply_moved(42, B, 7)
    assert smap.owner(42) == B
    assert smap.owner(41) == smap.owner(43) == A
    assert smap.epoch == 7
    smap.apply_moved(43, B, 2)
    assert smap.epoch == 7


# ---- MOVED and typed errors --------------------------------------------------------------


def moved_error(**metadata: str) -> SlotcacheError:
    return error_for(grpc.StatusCode.FAILED_PRECONDITION, "MOVED", "MOVED", metadata)


def test_parse_moved() -> None:
    err = moved_error(slot="42", address=B, epoch="7", node_id="x")
    assert isinstance(err, slotcache.Moved)
    assert isinstance(err, slotcache.FailedPrecondition)
    assert (err.slot, err.address, err.epoch) == (42, B, 7)
    assert parse_moved(err) == Redirect(42, B, 7)
    assert parse_moved(moved_error(slot="42", address=B)) == Redirect(42, B, 0)


@pytest.mark.parametrize(
    "metadata",
    [
        {"address": B},
        {"slot": "x", "address": B},
        {"slot": "16384", "address": B},
        {"slot": "-1", "address": B},
        {"slot": "1"},
        {"slot": "1", "address": B, "epoch": "e"},
    ],
)
def test_malformed_moved_is_not_followed(metadata: dict[str, str]) -> None:
    assert parse_moved(moved_error(**metadata)) is None


def test_only_moved_is_a_redirect() -> None:
    err = error_for(grpc.StatusCode.FAILED_PRECONDITION, "no", "NOT_INTEGER", {"slot": "1"})
    assert parse_moved(err) is None
    # A reason picks a subclass only of its status code's exception.
    odd = error_for(grpc.StatusCode.INTERNAL, "MOVED", "MOVED", {"slot": "1", "address": B})
    assert not isinstance(odd, slotcache.Moved)
    down = error_for(grpc.StatusCode.UNAVAILABLE, "CLUSTERDOWN", "CLUSTERDOWN")
    assert isinstance(down, slotcache.ClusterDown)
    assert isinstance(down, slotcache.Unavailable)
    oom = error_for(grpc.StatusCode.RESOURCE_EXHAUSTED, "full", "OOM")
    assert isinstance(oom, slotcache.OutOfMemory)


# ---- splitting and merging -----------------------------------------------------------------


def test_group_by_owner_keeps_request_order_within_groups() -> None:
    owners = [B, A, B, C, A]
    assert group_by_owner(range(5), owners.__getitem__) == {B: [0, 2], A: [1, 4], C: [3]}
    assert group_by_owner([], owners.__getitem__) == {}


def test_check_before_split() -> None:
    check_before_split("MGet", cmd.mget([b"a", b"b"]).request)
    with pytest.raises(slotcache.InvalidArgument, match=r"keys\[1\] is empty"):
        check_before_split("MDelete", cmd.mdelete([b"a", b""]).request)
    with pytest.raises(slotcache.InvalidArgument, match=r"keys\[0\] is empty"):
        check_before_split("MSet", cmd.mset({b"": b"x"}).request)
    bad_ttl = pb.MSetRequest(entries=[pb.SetRequest(key=b"a", value=b"", ttl_ms=-5)])
    with pytest.raises(slotcache.InvalidArgument, match="ttl_ms"):
        check_before_split("MSet", bad_ttl)


# ---- backoff and what may be retried -------------------------------------------------------


def test_backoff_schedule_grows_is_capped_and_jittered() -> None:
    policy = RetryPolicy(base_delay=0.05, max_delay=1.0, multiplier=2.0)
    assert [policy.ceiling(n) for n in range(1, 8)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert policy.ceiling(10_000) == 1.0
    for n in range(1, 8):
        assert policy.delay(n, lambda: 0.0) == policy.ceiling(n) / 2
        assert policy.delay(n, lambda: 0.999999) == pytest.approx(policy.ceiling(n), rel=1e-5)
    rng = random.Random(1)
    delays = {policy.delay(3, rng.random) for _ in range(50)}
    assert len(delays) > 40  # jittered
    assert all(0.1 <= d <= 0.2 for d in delays)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": -1},
        {"base_delay": 0},
        {"base_delay": 2, "max_delay": 1},
        {"multiplier": 0.5},
    ],
)
def test_retry_policy_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_what_counts_as_never_sent() -> None:
    assert never_sent(unavailable(REFUSED))
    assert never_sent(unavailable("CLUSTERDOWN the cluster is down", "CLUSTERDOWN"))
    assert never_sent(unavailable("DNS resolution failed for nowhere:1"))
    assert not never_sent(unavailable(BROKEN))
    assert not never_sent(unavailable("Socket closed"))
    assert not never_sent(error_for(grpc.StatusCode.DEADLINE_EXCEEDED, REFUSED))
    assert retryable(unavailable(BROKEN), idempotent=True)
    assert not retryable(unavailable(BROKEN), idempotent=False)
    assert retryable(unavailable(REFUSED), idempotent=False)
    assert not retryable(error_for(grpc.StatusCode.DEADLINE_EXCEEDED, "late"), idempotent=True)
    assert not retryable(error_for(grpc.StatusCode.CANCELLED, "closed"), idempotent=True)


# ---- the core: smart routing -------------------------------------------------------------


def test_core_loads_the_map_once_then_sends_each_key_to_its_owner() -> None:
    core, cluster, driver = make()
    assert core.owner_of(b"x") is None
    for address in (A, B, C, A, B, C):
        key = key_for(address, "k")
        assert run(driver, cmd.set_(key, b"v")) is True
        assert run(driver, cmd.get(key)) == b"v"
        assert core.owner_of(key) == address
    topology_calls = [c for c in cluster.calls if c.rpc == "Topology"]
    assert [c.address for c in topology_calls] == [A]
    assert all(c.redirect for c in driver.command_calls())
    assert [c.address for c in driver.command_calls()] == [a for a in (A, B, C) * 2 for _ in (1, 2)]
    stats = core.stats.as_dict()
    assert {k: stats[k] for k in ("redirects", "refreshes", "refresh_failures", "retries")} == {
        "redirects": 0,
        "refreshes": 1,
        "refresh_failures": 0,
        "retries": 0,
    }
    assert core.stats.operations == {"set": 6, "get": 6}


def test_core_follows_moved_patches_the_map_and_asks_for_a_refresh() -> None:
    core, cluster, driver = make()
    key = key_for(A, "moved")
    slot = key_slot(key)
    run(driver, cmd.set_(key, b"v"))
    driver.run_background = False
    cluster.move(slot, B)
    cluster.data.clear()  # the old owner dropped the slot's keys
    cluster.calls.clear()
    driver.clock.now += 1  # refreshes are rate-limited; the map was loaded just now

    assert run(driver, cmd.get(key)) is None
    assert [c.address for c in cluster.calls] == [A, B]  # MOVED, then straight to B
    assert core.stats.redirects == 1
    assert core.owner_of(key) == B  # patched at once, before any refresh
    assert core.owner_of(key_for(A, "other")) == A
    assert driver.background_refreshes == 1

    cluster.calls.clear()
    assert run(driver, cmd.set_(key, b"w")) is True
    assert run(driver, cmd.get(key)) == b"w"
    assert [c.address for c in cluster.calls] == [B, B]
    assert core.stats.redirects == 1


def test_core_background_refresh_learns_every_moved_slot() -> None:
    core, cluster, driver = make()
    first, second = key_for(A, "one"), key_for(A, "two")
    assert key_slot(first) != key_slot(second)
    run(driver, cmd.get(first))
    cluster.move(key_slot(first), C)
    cluster.move(key_slot(second), C)
    driver.clock.now += 1
    assert run(driver, cmd.get(first)) is None  # one MOVED, then a background refresh
    assert core.stats.refreshes == 2
    assert core.owner_of(second) == C  # learned from the refresh, not from a MOVED
    assert run(driver, cmd.get(second)) is None
    assert core.stats.redirects == 1


def test_core_bounds_redirects() -> None:
    core, cluster, driver = make(max_redirects=2)
    key = key_for(A, "pingpong")
    slot = key_slot(key)
    run(driver, cmd.get(key_for(B, "warm")))
    # A and B each believe the other owns the slot: a loop only a bound can stop.
    cluster.stale_views = {A: {slot: B}, B: {slot: A}}
    cluster.calls.clear()
    with pytest.raises(slotcache.Moved):
        run(driver, cmd.get(key))
    assert [c.address for c in driver.command_calls()] == [A, B, A]
    assert core.stats.redirects == 3


def test_core_refresh_ignores_a_map_older_than_what_it_knows() -> None:
    core, cluster, driver = make()
    run(driver, cmd.get(b"x"))
    key = key_for(A, "k")
    core.slot_map.apply_moved(key_slot(key), C, epoch=cluster.epoch + 5)  # type: ignore[union-attr]
    core._last_refresh = float("-inf")
    driver.run(core.refresh_plan(False, None))
    assert core.owner_of(key) == C
    assert core.stats.refreshes == 1


def test_core_refresh_keeps_the_reply_with_the_highest_epoch() -> None:
    core, cluster, driver = make([A, B])
    run(driver, cmd.get(b"x"))
    cluster.calls.clear()
    newer = cluster.topology(C)
    newer.epoch = cluster.epoch + 1
    newer.nodes[0].ClearField("slots")
    newer.nodes[0].slots.add(start=0, end=0)  # A keeps only slot 0 in the newer view
    original = cluster.topology
    cluster.topology = lambda responder: newer if responder == C else original(responder)  # type: ignore[method-assign]
    core._last_refresh = float("-inf")
    driver.run(core.refresh_plan(False, None))
    asked = [c.address for c in cluster.calls]
    assert sorted(asked) == [A, B, C]  # one round of three, concurrently in AsyncClient
    assert len(driver.steps[-1]) == 3
    assert core.slot_map is not None and core.slot_map.epoch == newer.epoch
    assert core.slot_map.owner(1) is None


def test_core_asks_seeds_in_order_and_fails_fast_when_none_answers() -> None:
    dead = "10.9.9.9:1"
    core, cluster, driver = make([dead, B])
    assert run(driver, cmd.get(b"x")) is None
    assert [c.address for c in cluster.calls if c.rpc == "Topology"] == [dead, B]
    assert core.stats.refreshes == 1

    core, cluster, driver = make([dead, "10.9.9.9:2"])
    with pytest.raises(slotcache.Unavailable):
        run(driver, cmd.get(b"x"))
    assert driver.sleeps == []  # a wrong address must not cost the whole deadline
    assert core.stats.refresh_failures == 1
    assert driver.command_calls() == []


def test_core_needs_no_call_for_an_empty_multi_key_command() -> None:
    _core, cluster, driver = make()
    assert run(driver, cmd.mget([])) == []
    assert run(driver, cmd.mdelete([])) == 0
    assert cluster.calls == []


# ---- the core: multi-key commands ------------------------------------------------------------


def test_core_splits_multi_key_commands_by_owner_and_merges_in_order() -> None:
    core, _cluster, driver = make()
    keys = [key_for(a, f"m{i}") for i, a in enumerate((C, A, B, A, C, B))]
    assert run(driver, cmd.mset([(k, k.upper()) for k in keys])) is None
    mset_step = driver.steps[-1]
    assert len(mset_step) == 3  # one call per owner, in one step (concurrent in AsyncClient)
    parts = {c.address: [e.key for e in c.request.entries] for c in mset_step}  # type: ignore[union-attr]
    assert parts == {C: [keys[0], keys[4]], A: [keys[1], keys[3]], B: [keys[2], keys[5]]}

    order = [keys[5], b"missing", keys[0], keys[1], keys[5]]
    assert run(driver, cmd.mget(order)) == [
        keys[5].upper(),
        None,
        keys[0].upper(),
        keys[1].upper(),
        keys[5].upper(),
    ]
    assert run(driver, cmd.mdelete([*keys, b"missing"])) == 6
    assert run(driver, cmd.mget(keys)) == [None] * 6
    assert core.stats.redirects == 0


def test_core_sends_a_multi_key_command_whole_when_one_node_owns_every_key() -> None:
    _core, _cluster, driver = make()
    keys = [key_for(B, f"same{i}") for i in range(4)]
    command = cmd.mget(keys)
    run(driver, command)
    (call,) = driver.steps[-1]
    assert isinstance(call, Call)
    assert call.request is command.request  # no copy


def test_core_resends_only_the_moved_part_of_a_split_command() -> None:
    core, cluster, driver = make()
    keys = [key_for(a, f"p{i}") for i, a in enumerate((A, B, C))]
    run(driver, cmd.mset([(k, b"v") for k in keys]))
    cluster.move(key_slot(keys[0]), C)
    cluster.calls.clear()
    assert run(driver, cmd.mget(keys)) == [b"v", b"v", b"v"]
    resent = driver.command_calls()[3:]
    assert [(c.address, list(c.request.keys)) for c in resent] == [(C, [keys[0]])]
    assert core.stats.redirects == 1


def test_core_checks_a_split_write_before_sending_any_part() -> None:
    _core, cluster, driver = make()
    run(driver, cmd.get(b"warm"))
    items = [(key_for(A, "a"), b"1"), (b"", b"2"), (key_for(C, "c"), b"3")]
    with pytest.raises(slotcache.InvalidArgument):
        run(driver, cmd.mset(items))
    assert driver.command_calls()[1:] == []
    assert cluster.data == {}


# ---- the core: UNAVAILABLE -------------------------------------------------------------------


def test_core_retries_an_idempotent_read_with_refresh_and_backoff() -> None:
    core, cluster, driver = make()
    key = key_for(B, "r")
    run(driver, cmd.set_(key, b"v"))
    cluster.fail(B, unavailable(BROKEN), unavailable(REFUSED), unavailable(REFUSED))
    driver.clock.now += 1
    assert run(driver, cmd.get(key)) == b"v"
    assert core.stats.retries == 3
    assert len(driver.sleeps) == 3
    policy = RetryPolicy()
    for n, slept in enumerate(driver.sleeps, start=1):
        assert policy.ceiling(n) / 2 <= slept <= policy.ceiling(n)
    # Each retry step refreshed the map alongside the sleep (rate limits permitting).
    retry_steps = [s for s in driver.steps if any(isinstance(a, Sleep) for a in s)]
    assert isinstance(retry_steps[0][0], Refresh)
    assert core.stats.refreshes >= 2


def test_core_retry_goes_to_the_owner_the_refresh_found() -> None:
    core, cluster, driver = make()
    key = key_for(B, "failover")
    run(driver, cmd.get(b"warm"))
    # B dies and its slot is taken over elsewhere (a failover): only a refresh can tell.
    cluster.down.add(B)
    cluster.move(key_slot(key), C)
    cluster.data[key] = b"replicated"
    driver.clock.now += 1
    assert run(driver, cmd.get(key)) == b"replicated"
    assert [c.address for c in driver.command_calls()[-2:]] == [B, C]
    assert core.stats.retries == 1
    assert core.stats.refreshes == 2
    assert core.stats.redirects == 0
    assert core.owner_of(key) == C


def test_core_does_not_resend_incr_after_it_may_have_run() -> None:
    core, cluster, driver = make()
    key = key_for(C, "n")
    assert run(driver, cmd.incr(key)) == 1
    cluster.fail(C, unavailable(BROKEN))
    with pytest.raises(slotcache.Unavailable, match="Connection reset"):
        run(driver, cmd.incr(key))
    assert core.stats.retries == 0
    assert driver.sleeps == []


def test_core_resends_incr_that_was_never_sent() -> None:
    core, cluster, driver = make()
    key = key_for(C, "n")
    run(driver, cmd.get(b"warm"))
    cluster.fail(C, unavailable(REFUSED), unavailable("CLUSTERDOWN down", "CLUSTERDOWN"))
    assert run(driver, cmd.incr(key, 5)) == 5
    assert core.stats.retries == 2
    assert cluster.data[key] == b"5"


def test_core_stops_retrying_at_the_deadline() -> None:
    core, cluster, driver = make()
    key = key_for(B, "d")
    run(driver, cmd.get(b"warm"))
    cluster.fail(B, *[unavailable(REFUSED)] * 1000)
    start = driver.clock.now
    with pytest.raises(slotcache.Unavailable):
        run(driver, cmd.get(key), timeout=2.0)
    assert driver.clock.now - start <= 2.0
    assert core.stats.retries >= 4
    assert sum(driver.sleeps) <= 2.0


def test_core_stops_retrying_after_max_retries_even_without_a_deadline() -> None:
    core, cluster, driver = make(timeout=None, retry=RetryPolicy(max_retries=3))
    run(driver, cmd.get(b"warm"))
    cluster.fail(A, *[unavailable(REFUSED)] * 1000)
    with pytest.raises(slotcache.Unavailable):
        run(driver, cmd.get(key_for(A, "x")))
    assert core.stats.retries == 3
    assert all(c.timeout is None for c in driver.command_calls())


def test_core_gives_each_attempt_the_time_left() -> None:
    _core, cluster, driver = make()
    run(driver, cmd.get(b"warm"))
    cluster.fail(A, unavailable(REFUSED))
    run(driver, cmd.get(key_for(A, "t")), timeout=3.0)
    first, second = driver.command_calls()[-2:]
    assert first.timeout == pytest.approx(3.0)
    assert second.timeout is not None and second.timeout < 3.0 - driver.sleeps[-1] + 1e-9


def test_core_does_not_retry_other_errors() -> None:
    core, cluster, driver = make()
    run(driver, cmd.get(b"warm"))
    cluster.fail(A, error_for(grpc.StatusCode.DEADLINE_EXCEEDED, "late"))
    with pytest.raises(slotcache.Timeout):
        run(driver, cmd.get(key_for(A, "late")))
    cluster.fail(A, error_for(grpc.StatusCode.FAILED_PRECONDITION, "nope", "NOT_INTEGER"))
    with pytest.raises(slotcache.FailedPrecondition):
        run(driver, cmd.incr(key_for(A, "late")))
    assert core.stats.retries == 0


# ---- the core: proxy mode ----------------------------------------------------------------------


def test_proxy_mode_sends_everything_to_one_node_without_redirects() -> None:
    core, cluster, driver = make(routing="proxy")
    # In proxy mode the node forwards; the fake node serves everything itself.
    cluster.owner = [A] * SLOT_COUNT
    keys = [key_for(a, "p") for a in (A, B, C)]
    run(driver, cmd.mset([(k, b"v") for k in keys]))
    assert run(driver, cmd.mget(keys)) == [b"v"] * 3
    assert [(c.address, c.redirect) for c in cluster.calls] == [(A, False), (A, False)]
    assert core.owner_of(keys[1]) == A
    assert core.stats.refreshes == 0


def test_proxy_mode_moves_to_the_next_seed_when_one_is_unreachable() -> None:
    dead = "10.9.9.9:1"
    core, cluster, driver = make([dead, A], routing="proxy")
    cluster.owner = [A] * SLOT_COUNT
    assert run(driver, cmd.incr(b"n")) == 1  # never sent to the dead seed, so safe to resend
    assert [c.address for c in cluster.calls] == [dead, A]
    assert driver.sleeps == []
    assert core.owner_of(b"n") == A

    core, cluster, driver = make([dead, "10.9.9.9:2"], routing="proxy")
    with pytest.raises(slotcache.Unavailable):
        run(driver, cmd.get(b"x"))
    assert len(cluster.calls) == 2
    assert driver.sleeps == []


# ---- construction -----------------------------------------------------------------------------


def test_addresses_and_options_are_checked() -> None:
    assert ClientCore("a:1").seeds == ["a:1"]
    assert ClientCore("a:1, b:2,a:1").seeds == ["a:1", "b:2"]
    assert ClientCore(["b:2", "a:1"]).seeds == ["b:2", "a:1"]
    for bad, error in (("", ValueError), ([], ValueError), (b"a:1", TypeError), ([1], TypeError)):
        with pytest.raises(error):
            ClientCore(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="routing"):
        ClientCore("a:1", routing="clever")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_redirects"):
        ClientCore("a:1", max_redirects=-1)


# ---- the core: stream or unary ---------------------------------------------------------------


def test_core_sends_commands_on_the_stream_and_the_rest_unary() -> None:
    core, _cluster, driver = make()
    key = key_for(A, "s")
    run(driver, cmd.set_(key, b"v"))
    run(driver, cmd.get(key))
    run(driver, cmd.mget([key, key_for(B, "t")]))
    assert all(c.stream for c in driver.command_calls())
    topology = [c for c in driver.cluster.calls if c.rpc == "Topology"]
    assert topology and not any(c.stream for c in topology)
    assert core.stats.unary_calls == len(topology)

    # A write that waits for replicas would hold up its whole stream: unary.
    run(driver, cmd.set_(key, b"v", min_replicas=1))
    run(driver, cmd.mset([(key, b"v")], min_replicas=1))
    # So would a request large enough to gain nothing from batching.
    run(driver, cmd.set_(key, b"x" * (2 * 1024 * 1024)))
    assert [c.stream for c in driver.command_calls()[-3:]] == [False, False, False]
    assert core.stats.unary_calls == len(topology) + 3


def test_core_without_pipelining_makes_every_call_unary() -> None:
    _core, _cluster, driver = make(pipelining=False)
    run(driver, cmd.get(key_for(A, "u")))
    assert [c.stream for c in driver.command_calls()] == [False]


def test_split_writes_keep_min_replicas_in_every_part() -> None:
    _core, _cluster, driver = make()
    keys = [key_for(a, "d") for a in (A, B, C)]
    run(driver, cmd.mset([(k, b"v") for k in keys], min_replicas=2))
    run(driver, cmd.mdelete(keys, min_replicas=1))
    parts = driver.command_calls()
    assert [c.request.min_replicas for c in parts] == [2, 2, 2, 1, 1, 1]


def test_core_resends_incr_that_never_left_a_broken_stream() -> None:
    core, cluster, driver = make()
    key = key_for(C, "n")
    run(driver, cmd.get(b"warm"))
    cluster.fail(C, slotcache.NotSent("the Pipeline stream to C failed before the op was sent"))
    assert run(driver, cmd.incr(key, 2)) == 2
    assert core.stats.retries == 1


def test_core_counts_calls_latency_and_faults() -> None:
    core, cluster, driver = make()
    key = key_for(A, "m")
    run(driver, cmd.get(key))
    cluster.fail(A, error_for(grpc.StatusCode.FAILED_PRECONDITION, "no", "NOT_INTEGER"))
    with pytest.raises(slotcache.FailedPrecondition):
        run(driver, cmd.incr(key))
    assert core.stats.operations == {"get": 1, "incr": 1}
    assert core.stats.faults == {("incr", "FailedPrecondition"): 1}
    assert core.stats.latency["get"].count == 1


def test_core_maps_replication_errors_to_typed_exceptions_and_never_retries_them() -> None:
    core, cluster, driver = make()
    key = key_for(B, "w")
    run(driver, cmd.get(b"warm"))
    cluster.fail(
        B,
        error_for(grpc.StatusCode.FAILED_PRECONDITION, "needs 1", "NOT_ENOUGH_REPLICAS"),
        error_for(grpc.StatusCode.DEADLINE_EXCEEDED, "late acks", "REPLICATION_TIMEOUT"),
    )
    with pytest.raises(slotcache.NotEnoughReplicas) as refused:
        run(driver, cmd.set_(key, b"v", min_replicas=1))
    assert isinstance(refused.value, slotcache.FailedPrecondition)
    with pytest.raises(slotcache.ReplicationTimeout) as late:
        run(driver, cmd.set_(key, b"v", min_replicas=1))
    assert isinstance(late.value, slotcache.Timeout)
    assert "may or may not survive" in (slotcache.ReplicationTimeout.__doc__ or "")
    assert core.stats.retries == 0
    assert len(driver.command_calls()) == 3


# ---- the core: replica reads ---------------------------------------------------------------


def with_replicas() -> tuple[ClientCore, FakeCluster, Driver]:
    cluster = FakeCluster()
    cluster.replicas = {"10.0.1.1:7000": A, "10.0.1.2:7000": A, "10.0.2.1:7000": B}
    cluster.synced = set(cluster.replicas)
    return make(cluster=cluster)


def test_replica_reads_go_unary_to_a_replica_of_the_owner_and_record_the_lag() -> None:
    core, cluster, driver = with_replicas()
    key = key_for(A, "r")
    run(driver, cmd.set_(key, b"v"))
    assert core.stats.replica_lag_ms is None
    seen = set()
    for _ in range(20):
        assert run(driver, cmd.get(key, replica_ok=True)) == b"v"
        call = driver.command_calls()[-1]
        assert call.replica and not call.stream
        seen.add(call.address)
    assert seen == {"10.0.1.1:7000", "10.0.1.2:7000"}  # spread over A's replicas
    assert core.stats.replica_reads == 20
    assert (core.stats.replica_lag_ms, core.stats.replica_lag_ops) == (3, 1)

    # A key whose owner has no replica is read from the owner, on the stream.
    other = key_for(C, "r")
    run(driver, cmd.get(other, replica_ok=True))
    assert driver.command_calls()[-1].address == C and driver.command_calls()[-1].stream

    # A replica-read mget goes to one replica per owner.
    run(driver, cmd.mget([key, key_for(B, "r")], replica_ok=True))
    last = driver.command_calls()[-2:]
    assert sorted(cluster.replicas[c.address] for c in last) == [A, B]


def test_a_replica_that_cannot_serve_yet_sends_the_read_to_the_primary() -> None:
    core, cluster, driver = with_replicas()
    cluster.synced.clear()  # still syncing
    key = key_for(B, "s")
    run(driver, cmd.set_(key, b"v"))
    assert run(driver, cmd.get(key, replica_ok=True)) == b"v"
    assert [c.address for c in driver.command_calls()[-2:]] == ["10.0.2.1:7000", B]
    assert core.stats.redirects == 0  # not a stale map: nothing to learn
    assert core.stats.replica_reads == 0


def test_the_slot_map_knows_each_primarys_healthy_replicas() -> None:
    cluster = FakeCluster()
    cluster.replicas = {"r1": A, "r2": A}
    reply = cluster.topology(A)
    reply.nodes[-1].failing = True
    slot_map = SlotMap.from_topology(reply, A)
    assert slot_map.replicas_of(A) == ("r1",)
    assert slot_map.replicas_of(B) == ()


# ---- the core: the near-cache seam and refresh scheduling -------------------------------------


def test_a_near_cache_plugs_into_the_read_path() -> None:
    core, _cluster, driver = make()
    near = NearCache(NearCacheConfig(), core.stats)
    near.on_message(A, pb.Invalidation(seq=1, subscription_id="sub", node_id="n"))
    core.near_cache = near
    key = key_for(A, "near")
    run(driver, cmd.set_(key, b"v"))
    assert run(driver, cmd.get(key)) == b"v"  # miss: asks the node, fills
    calls = len(driver.command_calls())
    assert run(driver, cmd.get(key)) == b"v"  # hit: no call
    assert len(driver.command_calls()) == calls
    assert (core.stats.near_cache_hits, core.stats.near_cache_misses) == (1, 1)
    assert [c.track for c in driver.command_calls()[-2:]] == ["sub", "sub"]  # Get + Ttl, tracked
    run(driver, cmd.set_(key, b"w"))  # a write drops the entry
    assert len(near) == 0
    assert run(driver, cmd.get(key)) == b"w"


def test_a_refresh_asked_for_too_soon_is_delayed_not_dropped() -> None:
    core, cluster, driver = make()
    key = key_for(A, "soon")
    run(driver, cmd.get(key))  # loads the map now
    cluster.move(key_slot(key), B)
    assert run(driver, cmd.get(key)) is None  # MOVED right after the load
    assert driver.refresh_delays == [pytest.approx(0.1)]  # waits out the rate limit
    assert core.stats.refreshes == 2
