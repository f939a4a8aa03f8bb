"""Requests to a 3-primary cluster through plain generated stubs: serve, forward, redirect.

Every test talks to real slotcache-server processes with the generated
``CacheStub`` and no SDK, as a client in any language would.
"""

from __future__ import annotations

import binascii
import time

import grpc
import pytest

from slotcache.contract import split_slots
from slotcache.v1 import admin_pb2
from slotcache.v1 import cache_pb2 as pb
from slotcache.v1 import cache_pb2_grpc as pb_grpc
from tests.support import security
from tests.support.nodes import (
    REDIRECT,
    RPC_TIMEOUT,
    SLOTS,
    NodeStubs,
    comparable,
    expect_failure,
    key_in_slot,
    owners_by_slot,
    percentile,
    slot_of,
    slots_of,
    wait_for,
)

FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION.value[0]
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]


def prefix_of(keys) -> bytes:
    return keys("")


@pytest.fixture(scope="module")
def slots_by_node(cluster3, nodes3) -> list[list[int]]:
    """The slots of each node, in creation order, from the first node's topology."""
    topology = nodes3[0].topology()
    return [slots_of(topology, address) for address in cluster3.addresses]


def node_key(keys, slots_by_node, node: int, name: str, nth: int = 0) -> bytes:
    """A key owned by node ``node`` (the ``nth`` slot of it, spread over its range)."""
    slots = slots_by_node[node]
    slot = slots[(nth * 997 + 13) % len(slots)]
    return key_in_slot(prefix_of(keys), slot, name)


def pipeline(stub, *batches: pb.PipelineRequest, metadata=()) -> list[pb.PipelineReply]:
    """Send every batch on one Pipeline stream and collect one reply per batch."""
    replies = list(stub.Pipeline(iter(batches), timeout=30, metadata=metadata))
    assert len(replies) == len(batches)
    return replies


# ---- the slot function -------------------------------------------------------------


def test_slot_helper_matches_redis_vectors():
    # CRC16/XMODEM("123456789") is 0x31C3 (the standard check value); Redis's slot is that % 16384.
    assert slot_of(b"123456789") == 0x31C3 % SLOTS == 12739
    assert slot_of(b"{user1000}.following") == slot_of(b"{user1000}.followers")
    # Only the first {...} with at least one byte inside is a hash tag.
    assert slot_of(b"foo{}{bar}") == binascii.crc_hqx(b"foo{}{bar}", 0) % SLOTS
    assert slot_of(b"foo{{bar}}zap") == slot_of(b"{bar")
    assert slot_of(b"foo{bar}{zap}") == slot_of(b"bar")


# ---- every slot through one node -------------------------------------------------


@pytest.mark.slow
def test_every_slot_is_readable_and_writable_through_any_node(nodes3, slots_by_node, keys):
    prefix = prefix_of(keys)
    all_keys = [key_in_slot(prefix, slot) for slot in range(SLOTS)]
    values = [b"v%d" % slot for slot in range(SLOTS)]
    entry = nodes3[0]

    # One MSet through one node writes a key in every slot (about 2/3 are forwarded).
    reply = entry.cache.MSet(
        pb.MSetRequest(
            entries=[pb.SetRequest(key=k, value=v) for k, v in zip(all_keys, values, strict=True)]
        ),
        timeout=30,
    )
    assert list(reply.applied) == [True] * SLOTS

    # The same node reads them all back, in request order.
    reply = entry.cache.MGet(pb.MGetRequest(keys=all_keys), timeout=30)
    assert [r.value if r.found else None for r in reply.results] == values

    # Every other node reads them too, one Get operation per slot in a Pipeline.
    batches = [
        pb.PipelineRequest(
            ops=[
                pb.Operation(id=s, get=pb.GetRequest(key=all_keys[s])) for s in range(lo, lo + 4096)
            ]
        )
        for lo in range(0, SLOTS, 4096)
    ]
    for node in nodes3.nodes[1:]:
        results = [r for batch in pipeline(node.cache, *batches) for r in batch.results]
        assert [r.id for r in results] == list(range(SLOTS))
        bad = [r.id for r in results if not (r.HasField("get") and r.get.value == values[r.id])]
        assert not bad, f"{node.address}: {len(bad)} slots read wrong, first {bad[:5]}"

    # Each key was stored on its slot's owner: the owner serves it with redirects on.
    for node, slots in zip(nodes3, slots_by_node, strict=True):
        owned = [all_keys[s] for s in slots]
        reply = node.cache.MGet(pb.MGetRequest(keys=owned), timeout=30, metadata=REDIRECT)
        assert all(r.found for r in reply.results), node.address

    # Writes through Pipeline Set (single-key operations) reach every slot as well.
    new_values = [b"w%d" % slot for slot in range(SLOTS)]
    batches = [
        pb.PipelineRequest(
            ops=[
                pb.Operation(id=s, set=pb.SetRequest(key=all_keys[s], value=new_values[s]))
                for s in range(lo, lo + 4096)
            ]
        )
        for lo in range(0, SLOTS, 4096)
    ]
    results = [r for batch in pipeline(nodes3[2].cache, *batches) for r in batch.results]
    assert [r.id for r in results] == list(range(SLOTS))
    assert all(r.HasField("set") and r.set.applied for r in results)
    reply = nodes3[1].cache.MGet(pb.MGetRequest(keys=all_keys), timeout=30)
    assert [r.value for r in reply.results] == new_values

    # MDelete through one node removes them everywhere.
    reply = nodes3[1].cache.MDelete(pb.MDeleteRequest(keys=all_keys), timeout=30)
    assert reply.deleted == SLOTS
    reply = nodes3[0].cache.MGet(pb.MGetRequest(keys=all_keys), timeout=30)
    assert not any(r.found for r in reply.results)


# ---- multi-key operations across nodes -------------------------------------------


def test_mget_across_nodes_keeps_request_order_with_missing_keys(nodes3, slots_by_node, keys):
    def k(node: int, name: str) -> bytes:
        return node_key(keys, slots_by_node, node, name, nth=len(name))

    present = {k(0, "a"): b"A0", k(1, "bb"): b"B1", k(2, "ccc"): b"C2", k(1, "dddd"): b"D1"}
    assert (
        nodes3[2]
        .cache.MSet(
            pb.MSetRequest(entries=[pb.SetRequest(key=key, value=v) for key, v in present.items()]),
            timeout=RPC_TIMEOUT,
        )
        .applied
        == [True] * 4
    )
    request = [
        k(0, "a"),
        k(1, "missing1"),
        k(2, "ccc"),
        k(1, "bb"),
        k(0, "missing0"),
        k(2, "missing2"),
        k(1, "dddd"),
        k(0, "a"),  # a duplicate, answered twice
    ]
    assert len({slot_of(key) for key in request}) >= 6
    expected = [present.get(key) for key in request]
    for node in nodes3:
        reply = node.cache.MGet(pb.MGetRequest(keys=request), timeout=RPC_TIMEOUT)
        assert [r.value if r.found else None for r in reply.results] == expected, node.address
        assert [r.found for r in reply.results] == [e is not None for e in expected]


def test_mset_across_nodes_merges_applied_flags_in_order(nodes3, slots_by_node, keys):
    def k(node: int, name: str) -> bytes:
        return node_key(keys, slots_by_node, node, name, nth=len(name) + 3)

    existing = [k(1, "x1"), k(2, "x22")]
    for key in existing:
        assert nodes3[0].set(key, b"old")
    absent = pb.SET_CONDITION_IF_ABSENT
    entries = [
        pb.SetRequest(key=k(0, "n0"), value=b"new", condition=absent),
        pb.SetRequest(key=existing[0], value=b"new", condition=absent),  # not applied
        pb.SetRequest(key=k(2, "n222"), value=b"new", condition=absent),
        pb.SetRequest(key=existing[1], value=b"new", condition=pb.SET_CONDITION_IF_PRESENT),
        pb.SetRequest(key=k(1, "n1111"), value=b"new", condition=pb.SET_CONDITION_IF_PRESENT),
        pb.SetRequest(key=k(0, "plain"), value=b"new"),
    ]
    reply = nodes3[1].cache.MSet(pb.MSetRequest(entries=entries), timeout=RPC_TIMEOUT)
    assert list(reply.applied) == [True, False, True, True, False, True]
    got = nodes3[2].cache.MGet(pb.MGetRequest(keys=[e.key for e in entries]), timeout=RPC_TIMEOUT)
    assert [r.value if r.found else None for r in got.results] == [
        b"new",
        b"old",
        b"new",
        b"new",
        None,
        b"new",
    ]


def test_mset_with_one_bad_entry_writes_nothing_on_any_node(nodes3, slots_by_node, keys):
    good = [node_key(keys, slots_by_node, n, f"good{n}") for n in range(3)]
    bad_entries = [
        pb.SetRequest(key=node_key(keys, slots_by_node, 2, "bad"), value=b"v", ttl_ms=-1),
        pb.SetRequest(key=b"", value=b"v"),
        pb.SetRequest(
            key=node_key(keys, slots_by_node, 1, "bad"), value=b"v", keep_ttl=True, ttl_ms=5
        ),
    ]
    for bad in bad_entries:
        for entry in nodes3:
            entries = [pb.SetRequest(key=key, value=b"v") for key in good] + [bad]
            failure = expect_failure(
                lambda e=entry, en=entries: e.cache.MSet(
                    pb.MSetRequest(entries=en), timeout=RPC_TIMEOUT
                )
            )
            assert failure.code == grpc.StatusCode.INVALID_ARGUMENT, failure
            assert "entries[3]" in failure.message, failure.message
    reply = nodes3[0].cache.MGet(pb.MGetRequest(keys=good), timeout=RPC_TIMEOUT)
    assert not any(r.found for r in reply.results)
    for node, key in zip(nodes3, good, strict=True):
        assert node.get(key, REDIRECT) is None


def test_mdelete_across_nodes_counts_only_existing_keys(nodes3, slots_by_node, keys):
    present = [
        node_key(keys, slots_by_node, n, f"del{i}", nth=i + 7) for i, n in enumerate((0, 1, 2, 1))
    ]
    assert len(set(present)) == 4
    for key in present:
        nodes3[0].set(key, b"v")
    request = [
        present[0],
        node_key(keys, slots_by_node, 2, "gone2"),
        present[1],
        present[2],
        node_key(keys, slots_by_node, 0, "gone0"),
        present[3],
        present[1],  # a duplicate counts once
    ]
    reply = nodes3[2].cache.MDelete(pb.MDeleteRequest(keys=request), timeout=RPC_TIMEOUT)
    assert reply.deleted == 4
    got = nodes3[1].cache.MGet(pb.MGetRequest(keys=present), timeout=RPC_TIMEOUT)
    assert not any(r.found for r in got.results)
    assert nodes3[1].cache.MDelete(pb.MDeleteRequest(keys=request), timeout=5).deleted == 0


# ---- Pipeline ------------------------------------------------------------------------


def test_pipeline_batches_mixing_all_nodes_keep_order_and_ids(nodes3, slots_by_node, keys):
    def k(node: int, name: str) -> bytes:
        return node_key(keys, slots_by_node, node, name, nth=len(name) * 5)

    a, b, c = k(0, "pa"), k(1, "pbb"), k(2, "pccc")
    counter, text = k(2, "pcounter"), k(1, "ptext")
    first = pb.PipelineRequest(
        ops=[
            pb.Operation(id=901, set=pb.SetRequest(key=a, value=b"A")),
            pb.Operation(id=17, set=pb.SetRequest(key=b, value=b"B")),
            pb.Operation(id=5, set=pb.SetRequest(key=c, value=b"C")),
            pb.Operation(id=4000000000, set=pb.SetRequest(key=text, value=b"not a number")),
            pb.Operation(id=3, incr=pb.IncrRequest(key=counter, delta=40)),
            pb.Operation(id=2, incr=pb.IncrRequest(key=counter, delta=2)),
            pb.Operation(id=77, get=pb.GetRequest(key=b)),
            pb.Operation(id=78, get=pb.GetRequest(key=c)),
            pb.Operation(id=79, get=pb.GetRequest(key=a)),
        ]
    )
    second = pb.PipelineRequest(
        ops=[
            pb.Operation(id=1, mget=pb.MGetRequest(keys=[c, k(0, "nope"), a, b])),
            pb.Operation(id=6, incr=pb.IncrRequest(key=text, delta=1)),
            pb.Operation(id=7, get=pb.GetRequest(key=b"")),
            pb.Operation(id=8),  # no operation set
            pb.Operation(id=9, exists=pb.ExistsRequest(key=counter)),
            pb.Operation(
                id=10,
                mset=pb.MSetRequest(
                    entries=[
                        pb.SetRequest(key=k(1, "m1"), value=b"m1"),
                        pb.SetRequest(key=k(2, "m22"), value=b"m2"),
                        pb.SetRequest(key=k(0, "m333"), value=b"m0"),
                    ]
                ),
            ),
            pb.Operation(id=11, mdelete=pb.MDeleteRequest(keys=[a, c, k(1, "nope")])),
            pb.Operation(id=12, ttl=pb.TtlRequest(key=b)),
        ]
    )
    for node in nodes3:
        replies = pipeline(node.cache, first, second)
        r1, r2 = list(replies[0].results), list(replies[1].results)
        assert [r.id for r in r1] == [op.id for op in first.ops]
        assert [r.id for r in r2] == [op.id for op in second.ops]
        assert all(r.set.applied for r in r1[:4])
        assert [r1[4].incr.value, r1[5].incr.value] == [40, 42]
        assert [r.get.value for r in r1[6:]] == [b"B", b"C", b"A"]
        assert [x.value if x.found else None for x in r2[0].mget.results] == [
            b"C",
            None,
            b"A",
            b"B",
        ]
        assert r2[1].error.code == FAILED_PRECONDITION
        assert r2[1].error.reason == "NOT_INTEGER"
        assert r2[2].error.code == INVALID_ARGUMENT
        assert r2[3].HasField("error")
        assert r2[4].exists.exists
        assert list(r2[5].mset.applied) == [True, True, True]
        assert r2[6].mdelete.deleted == 2
        assert r2[7].ttl.found and not r2[7].ttl.has_ttl
        # Reset for the next node.
        nodes3[0].cache.MDelete(pb.MDeleteRequest(keys=[counter]), timeout=RPC_TIMEOUT)


def test_pipeline_batch_runs_in_order_for_the_same_key(nodes3, slots_by_node, keys):
    """A later operation in a batch sees the effect of an earlier one, as on one node."""
    local, remote = node_key(keys, slots_by_node, 0, "ord0"), node_key(keys, slots_by_node, 1, "o1")
    entry = nodes3[0]
    batch = pb.PipelineRequest(
        ops=[
            pb.Operation(
                id=1,
                mset=pb.MSetRequest(
                    entries=[
                        pb.SetRequest(key=local, value=b"one"),
                        pb.SetRequest(key=remote, value=b"one"),
                    ]
                ),
            ),
            pb.Operation(id=2, get=pb.GetRequest(key=local)),
            pb.Operation(id=3, get=pb.GetRequest(key=remote)),
            pb.Operation(id=4, set=pb.SetRequest(key=remote, value=b"two")),
            pb.Operation(id=5, mget=pb.MGetRequest(keys=[local, remote])),
            pb.Operation(id=6, mdelete=pb.MDeleteRequest(keys=[local, remote])),
            pb.Operation(id=7, exists=pb.ExistsRequest(key=local)),
            pb.Operation(id=8, incr=pb.IncrRequest(key=remote, delta=3)),
        ]
    )
    results = list(pipeline(entry.cache, batch)[0].results)
    assert [r.id for r in results] == list(range(1, 9))
    assert list(results[0].mset.applied) == [True, True]
    assert results[1].get.value == b"one"
    assert results[2].get.value == b"one"
    assert results[3].set.applied
    assert [x.value for x in results[4].mget.results] == [b"one", b"two"]
    assert results[5].mdelete.deleted == 2
    assert not results[6].exists.exists
    assert results[7].incr.value == 3


# ---- single-key operations forwarded ------------------------------------------------


def test_incr_expire_ttl_exists_delete_are_forwarded(nodes3, slots_by_node, keys):
    entry = nodes3[0]
    for owner in (1, 2):
        counter = node_key(keys, slots_by_node, owner, "counter")
        assert entry.cache.Incr(pb.IncrRequest(key=counter, delta=5), timeout=5).value == 5
        assert entry.cache.Incr(pb.IncrRequest(key=counter, delta=7), timeout=5).value == 12
        assert nodes3[owner].get(counter, REDIRECT) == b"12"  # stored on the owner

        text = node_key(keys, slots_by_node, owner, "text")
        entry.set(text, b"abc")
        failure = expect_failure(
            lambda t=text: entry.cache.Incr(pb.IncrRequest(key=t, delta=1), timeout=5)
        )
        assert failure.code == grpc.StatusCode.FAILED_PRECONDITION
        assert failure.reason == "NOT_INTEGER"  # the owner's error detail is relayed

        key = node_key(keys, slots_by_node, owner, "ttl")
        assert not entry.cache.Expire(pb.ExpireRequest(key=key, ttl_ms=60_000), timeout=5).applied
        assert not entry.cache.Ttl(pb.TtlRequest(key=key), timeout=5).found
        entry.set(key, b"v")
        assert entry.cache.Expire(pb.ExpireRequest(key=key, ttl_ms=60_000), timeout=5).applied
        for node, metadata in ((entry, ()), (nodes3[owner], REDIRECT)):
            ttl = node.cache.Ttl(pb.TtlRequest(key=key), timeout=5, metadata=metadata)
            assert ttl.found and ttl.has_ttl
            assert 50_000 < ttl.ttl_ms <= 60_000
        assert entry.cache.Expire(pb.ExpireRequest(key=key, clear=True), timeout=5).applied
        ttl = nodes3[owner].cache.Ttl(pb.TtlRequest(key=key), timeout=5, metadata=REDIRECT)
        assert ttl.found and not ttl.has_ttl

        failure = expect_failure(
            lambda k=key: entry.cache.Expire(pb.ExpireRequest(key=k, ttl_ms=-5), timeout=5)
        )
        assert failure.code == grpc.StatusCode.INVALID_ARGUMENT

        assert entry.cache.Exists(pb.ExistsRequest(key=key), timeout=5).exists
        assert entry.cache.Delete(pb.DeleteRequest(key=key), timeout=5).deleted
        assert (
            not nodes3[owner]
            .cache.Exists(pb.ExistsRequest(key=key), timeout=5, metadata=REDIRECT)
            .exists
        )

        short = node_key(keys, slots_by_node, owner, "short")
        assert entry.cache.Set(pb.SetRequest(key=short, value=b"x", ttl_ms=200), timeout=5).applied
        assert nodes3[owner].get(short, REDIRECT) == b"x"
        wait_for(
            lambda n=nodes3[owner], k=short: n.get(k, REDIRECT) is None, 5, "the key to expire"
        )


# ---- redirect mode -------------------------------------------------------------------


def test_redirect_mode_answers_moved_for_other_nodes_keys(cluster3, nodes3, slots_by_node, keys):
    topology = nodes3[0].topology()
    ids = {n.address: n.id for n in topology.nodes}
    entry = nodes3[0]
    mine = node_key(keys, slots_by_node, 0, "mine")
    assert entry.set(mine, b"here", REDIRECT)
    assert entry.get(mine, REDIRECT) == b"here"

    for owner in (1, 2):
        key = node_key(keys, slots_by_node, owner, "theirs")
        calls = [
            lambda k=key: entry.cache.Get(pb.GetRequest(key=k), timeout=5, metadata=REDIRECT),
            lambda k=key: entry.cache.Set(
                pb.SetRequest(key=k, value=b"x"), timeout=5, metadata=REDIRECT
            ),
            lambda k=key: entry.cache.Incr(
                pb.IncrRequest(key=k, delta=1), timeout=5, metadata=REDIRECT
            ),
            lambda k=key: entry.cache.MGet(
                pb.MGetRequest(keys=[mine, k]), timeout=5, metadata=REDIRECT
            ),
        ]
        for call in calls:
            failure = expect_failure(call)
            assert failure.code == grpc.StatusCode.FAILED_PRECONDITION, failure
            assert failure.reason == "MOVED", failure
            assert failure.metadata["slot"] == str(slot_of(key))
            assert failure.metadata["address"] == cluster3.addresses[owner]
            assert failure.metadata["node_id"] == ids[cluster3.addresses[owner]]
            # The epoch is the owner's config epoch: what orders claims on a slot.
            owner_info = next(n for n in topology.nodes if n.address == cluster3.addresses[owner])
            assert int(failure.metadata["epoch"]) == owner_info.config_epoch
        # Nothing was written anywhere.
        assert nodes3[owner].get(key, REDIRECT) is None

    # Multi-key requests whose keys are all local are served.
    other = node_key(keys, slots_by_node, 0, "mine2", nth=5)
    reply = entry.cache.MGet(pb.MGetRequest(keys=[mine, other]), timeout=5, metadata=REDIRECT)
    assert [r.found for r in reply.results] == [True, False]


def test_redirect_mode_in_pipeline_gives_per_operation_moved(cluster3, nodes3, slots_by_node, keys):
    entry = nodes3[1]
    mine = node_key(keys, slots_by_node, 1, "pmine")
    theirs = node_key(keys, slots_by_node, 2, "ptheirs")
    other = node_key(keys, slots_by_node, 0, "pother")
    batch = pb.PipelineRequest(
        ops=[
            pb.Operation(id=10, set=pb.SetRequest(key=mine, value=b"ok")),
            pb.Operation(id=20, set=pb.SetRequest(key=theirs, value=b"no")),
            pb.Operation(id=30, get=pb.GetRequest(key=mine)),
            pb.Operation(id=40, get=pb.GetRequest(key=other)),
            pb.Operation(id=50, mget=pb.MGetRequest(keys=[mine, other])),
        ]
    )
    results = list(pipeline(entry.cache, batch, metadata=REDIRECT)[0].results)
    assert [r.id for r in results] == [10, 20, 30, 40, 50]
    assert results[0].set.applied
    assert results[2].get.value == b"ok"
    expected = ((results[1], theirs, 2), (results[3], other, 0), (results[4], other, 0))
    for result, key, owner in expected:
        assert result.HasField("error"), result
        assert result.error.code == FAILED_PRECONDITION
        assert result.error.reason == "MOVED"
        assert result.error.metadata["slot"] == str(slot_of(key))
        assert result.error.metadata["address"] == cluster3.addresses[owner]
    assert nodes3[2].get(theirs, REDIRECT) is None


# ---- hop limit -----------------------------------------------------------------------


def test_hop_limit_refuses_instead_of_forwarding(nodes3, slots_by_node, keys):
    entry = nodes3[0]
    remote = node_key(keys, slots_by_node, 1, "hop")
    local = node_key(keys, slots_by_node, 0, "hop")
    for hops in ("3", "7", "not-a-number"):
        metadata = (("slotcache-hops", hops),)
        failure = expect_failure(
            lambda m=metadata: entry.cache.Set(
                pb.SetRequest(key=remote, value=b"x"), timeout=5, metadata=m
            )
        )
        assert failure.code == grpc.StatusCode.UNAVAILABLE, failure
        failure = expect_failure(
            lambda m=metadata: entry.cache.MGet(
                pb.MGetRequest(keys=[local, remote]), timeout=5, metadata=m
            )
        )
        assert failure.code == grpc.StatusCode.UNAVAILABLE, failure
        # The owner's own keys are still served: no hop is needed.
        assert entry.set(local, b"here", metadata)
        results = list(
            pipeline(
                entry.cache,
                pb.PipelineRequest(
                    ops=[
                        pb.Operation(id=1, get=pb.GetRequest(key=local)),
                        pb.Operation(id=2, set=pb.SetRequest(key=remote, value=b"x")),
                    ]
                ),
                metadata=metadata,
            )[0].results
        )
        assert results[0].get.value == b"here"
        assert results[1].error.code == UNAVAILABLE
    assert nodes3[1].get(remote, REDIRECT) is None  # never forwarded
    # One hop below the limit is still forwarded.
    assert entry.set(remote, b"ok", (("slotcache-hops", "2"),))
    assert nodes3[1].get(remote, REDIRECT) == b"ok"


# ---- topology ------------------------------------------------------------------------


def test_topology_is_complete_and_the_same_from_every_node(cluster3, nodes3):
    replies = [node.topology() for node in nodes3]
    first = replies[0]
    assert len(first.nodes) == 3
    assert {n.address for n in first.nodes} == set(cluster3.addresses)
    assert all(n.role == pb.ROLE_PRIMARY and not n.primary_id for n in first.nodes)
    assert all(not n.failing for n in first.nodes)
    assert first.cluster_ok
    assert len({n.config_epoch for n in first.nodes}) == 3
    assert first.epoch >= max(n.config_epoch for n in first.nodes)
    owners = owners_by_slot(first)  # covers 0..16383 exactly once
    for address, (start, end) in zip(cluster3.addresses, split_slots(3), strict=True):
        assert owners[start : end + 1] == [address] * (end - start + 1)
    for node, reply in zip(nodes3, replies, strict=True):
        assert comparable(reply) == comparable(first), node.address
        info = node.admin.Info(admin_pb2.InfoRequest(), timeout=5)
        assert reply.responder_id == info.server["node_id"]
    assert len({r.responder_id for r in replies}) == 3
    # The Admin view agrees with the public one.
    for node in nodes3:
        state = node.state()
        assert state.cluster_ok and state.known_nodes == 3 and state.size == 3
        assert state.slots_assigned == SLOTS
        assert state.current_epoch == first.epoch


# ---- latency -------------------------------------------------------------------------

LATENCY_CALLS = 2000


def _get_latencies(stub, key: bytes, calls: int) -> list[float]:
    request = pb.GetRequest(key=key)
    get = stub.Get
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        get(request, timeout=5)
        samples.append(time.perf_counter() - start)
    return samples


@pytest.mark.slow
def test_forwarded_get_latency_against_direct(nodes3, slots_by_node, keys, servers, report_figure):
    entry = nodes3[0]
    direct_key = node_key(keys, slots_by_node, 0, "lat")
    forwarded_key = node_key(keys, slots_by_node, 1, "lat")
    entry.set(direct_key, b"x" * 100)
    entry.set(forwarded_key, b"x" * 100)
    standalone = servers.start()
    with security.current().channel(standalone.address) as channel:
        alone = pb_grpc.CacheStub(channel)
        alone.Set(pb.SetRequest(key=direct_key, value=b"x" * 100), timeout=5)
        for stub, key in (
            (entry.cache, direct_key),
            (entry.cache, forwarded_key),
            (alone, direct_key),
        ):
            _get_latencies(stub, key, 200)  # warm up channels on both hops
        # Interleave the three kinds in rounds so load drifts affect them alike.
        direct, forwarded, single = [], [], []
        for _ in range(10):
            direct += _get_latencies(entry.cache, direct_key, LATENCY_CALLS // 10)
            forwarded += _get_latencies(entry.cache, forwarded_key, LATENCY_CALLS // 10)
            single += _get_latencies(alone, direct_key, LATENCY_CALLS // 10)

    def us(samples: list[float], q: float) -> float:
        return percentile(samples, q) * 1e6

    report_figure(
        f"unary Get over {LATENCY_CALLS} calls, p50/p99 in us: "
        f"direct to owner {us(direct, 0.5):.0f}/{us(direct, 0.99):.0f}, "
        f"forwarded by a non-owner {us(forwarded, 0.5):.0f}/{us(forwarded, 0.99):.0f}, "
        f"standalone node {us(single, 0.5):.0f}/{us(single, 0.99):.0f}; "
        f"forwarded/direct p50 = {percentile(forwarded, 0.5) / percentile(direct, 0.5):.2f}x, "
        f"cluster direct/standalone p50 = {percentile(direct, 0.5) / percentile(single, 0.5):.2f}x"
    )
    # Forwarding adds a second RPC, so it costs more than a direct call, but not absurdly more.
    assert percentile(direct, 0.5) < percentile(forwarded, 0.5)
    assert percentile(forwarded, 0.5) < max(5 * percentile(direct, 0.5), 0.005)
    # The owned-key fast path in cluster mode costs about what a standalone node does.
    assert percentile(direct, 0.5) < 1.5 * percentile(single, 0.5) + 0.0002


# ---- bad input and big values --------------------------------------------------------


def test_bad_input_fails_the_same_way_on_every_node_as_on_a_standalone_one(
    nodes3, slots_by_node, keys, servers
):
    standalone = NodeStubs.open(servers.start().address)
    too_long = node_key(keys, slots_by_node, 1, "x" * (64 * 1024))
    cases = {
        "empty key": lambda s: s.Get(pb.GetRequest(key=b""), timeout=5),
        "long key": lambda s: s.Get(pb.GetRequest(key=too_long), timeout=5),
        "long key set": lambda s: s.Set(pb.SetRequest(key=too_long, value=b"v"), timeout=5),
        "negative ttl": lambda s: s.Set(
            pb.SetRequest(key=node_key(keys, slots_by_node, 2, "t"), value=b"v", ttl_ms=-1),
            timeout=5,
        ),
        "bad expire": lambda s: s.Expire(
            pb.ExpireRequest(key=node_key(keys, slots_by_node, 1, "e"), ttl_ms=0), timeout=5
        ),
        "empty key in mget": lambda s: s.MGet(
            pb.MGetRequest(keys=[node_key(keys, slots_by_node, 2, "m"), b""]), timeout=5
        ),
    }
    try:
        for name, call in cases.items():
            expected = expect_failure(lambda c=call: c(standalone.cache))
            assert expected.code == grpc.StatusCode.INVALID_ARGUMENT, (name, expected)
            for node in nodes3:
                got = expect_failure(lambda c=call, n=node: c(n.cache))
                assert (got.code, got.message) == (expected.code, expected.message), (
                    name,
                    node.address,
                )
    finally:
        standalone.close()


def test_large_values_are_forwarded_both_ways(nodes3, slots_by_node, keys):
    value = bytes(range(256)) * (24 * 1024)  # 6 MiB: above gRPC's 4 MiB default
    remote = node_key(keys, slots_by_node, 2, "big")
    assert nodes3[0].set(remote, value)
    assert nodes3[1].get(remote) == value
    assert nodes3[2].get(remote, REDIRECT) == value
    reply = nodes3[0].cache.MGet(
        pb.MGetRequest(keys=[remote, node_key(keys, slots_by_node, 0, "small")]), timeout=10
    )
    assert [r.value for r in reply.results] == [value, b""]
    nodes3[0].cache.Delete(pb.DeleteRequest(key=remote), timeout=5)


def test_unary_and_pipeline_route_alike_with_an_unowned_slot(servers, keys):
    """The same operation answers the same way as a unary call and inside a Pipeline.

    Two primaries leave some slots unowned, and coverage is not required, so
    the cluster is ok. An MGet over a slot served by the other node and an
    unowned slot is CLUSTERDOWN either way (every slot must be served before
    MOVED is considered, as in Redis), with or without redirects.
    """
    a, b = (servers.start("--require-full-coverage", "no", cluster=True) for _ in range(2))
    stubs = [NodeStubs.open(a.address), NodeStubs.open(b.address)]
    try:
        ranges = [(0, 8191), (8192, 16000)]  # 16001..16383 stay unowned
        for node, (start, end) in zip(stubs, ranges, strict=True):
            node.admin.AddSlots(
                admin_pb2.AddSlotsRequest(ranges=[pb.SlotRange(start=start, end=end)]),
                timeout=RPC_TIMEOUT,
            )
        bus_b = next(p.bus_address for p in stubs[1].state().peers if "myself" in p.flags)
        host, _, port = bus_b.rpartition(":")
        stubs[0].admin.Meet(admin_pb2.MeetRequest(host=host, bus_port=int(port)), timeout=10)
        wait_for(
            lambda: all(n.state().cluster_ok and len(n.state().peers) == 2 for n in stubs),
            20,
            "both nodes to know each other and be ok",
        )
        prefix = prefix_of(keys)
        theirs, unowned = key_in_slot(prefix, 9000, "b"), key_in_slot(prefix, 16100, "u")
        mine = key_in_slot(prefix, 100, "a")
        cases = [
            pb.MGetRequest(keys=[theirs, unowned]),
            pb.MGetRequest(keys=[unowned, theirs]),
            pb.MGetRequest(keys=[mine, unowned]),
        ]
        for metadata in ((), REDIRECT):
            for request in cases:
                unary = expect_failure(
                    lambda r=request, m=metadata: stubs[0].cache.MGet(
                        r, timeout=RPC_TIMEOUT, metadata=m
                    )
                )
                (reply,) = pipeline(
                    stubs[0].cache,
                    pb.PipelineRequest(ops=[pb.Operation(id=1, mget=request)]),
                    metadata=metadata,
                )
                error = reply.results[0].error
                assert (unary.code.value[0], unary.reason) == (error.code, error.reason)
                assert unary.reason == "CLUSTERDOWN", (metadata, unary)
        # Served keys still route as usual: MOVED for the other node's key with redirects.
        moved = expect_failure(
            lambda: stubs[0].cache.Get(pb.GetRequest(key=theirs), timeout=5, metadata=REDIRECT)
        )
        assert moved.reason == "MOVED" and moved.metadata["address"] == b.address
    finally:
        for node in stubs:
            node.close()
