"""Every Cache RPC against a real server, through the plain generated stub."""

from __future__ import annotations

import time

from slotcache.v1 import cache_pb2 as pb
from tests.support.nodes import eventually

LONG_TTL_MS = 600_000
SHORT_TTL_MS = 150


def get(stub, key: bytes) -> bytes | None:
    reply = stub.Get(pb.GetRequest(key=key), timeout=5)
    return reply.value if reply.found else None


def ttl(stub, key: bytes) -> pb.TtlReply:
    return stub.Ttl(pb.TtlRequest(key=key), timeout=5)


# ---- Get / Set ---------------------------------------------------------------


def test_get_missing_key(stub, keys):
    reply = stub.Get(pb.GetRequest(key=keys("missing")))
    assert not reply.found
    assert reply.value == b""


def test_set_then_get(stub, keys):
    k = keys("k")
    assert stub.Set(pb.SetRequest(key=k, value=b"v1")).applied
    assert get(stub, k) == b"v1"
    assert stub.Set(pb.SetRequest(key=k, value=b"v2")).applied
    assert get(stub, k) == b"v2"


def test_binary_and_empty_values_round_trip(stub, keys):
    binary = bytes(range(256)) * 4
    assert stub.Set(pb.SetRequest(key=keys("bin"), value=binary)).applied
    assert get(stub, keys("bin")) == binary
    assert stub.Set(pb.SetRequest(key=keys("empty"), value=b"")).applied
    reply = stub.Get(pb.GetRequest(key=keys("empty")))
    assert reply.found
    assert reply.value == b""
    # Keys are bytes too.
    odd_key = keys(b"\x00\xff\n")
    assert stub.Set(pb.SetRequest(key=odd_key, value=b"x")).applied
    assert get(stub, odd_key) == b"x"


def test_large_value_round_trips(stub, keys):
    value = bytes(range(256)) * (5 * 4096)  # 5 MiB, above gRPC's 4 MiB default
    assert stub.Set(pb.SetRequest(key=keys("big"), value=value)).applied
    assert get(stub, keys("big")) == value
    assert stub.Delete(pb.DeleteRequest(key=keys("big"))).deleted


def test_set_with_ttl_expires(stub, keys):
    k = keys("k")
    assert stub.Set(pb.SetRequest(key=k, value=b"v", ttl_ms=LONG_TTL_MS)).applied
    reply = ttl(stub, k)
    assert reply.found and reply.has_ttl
    assert LONG_TTL_MS - 5_000 < reply.ttl_ms <= LONG_TTL_MS

    short = keys("short")
    assert stub.Set(pb.SetRequest(key=short, value=b"v", ttl_ms=SHORT_TTL_MS)).applied
    assert 0 <= ttl(stub, short).ttl_ms <= SHORT_TTL_MS
    assert eventually(lambda: get(stub, short) is None)
    assert not stub.Exists(pb.ExistsRequest(key=short)).exists
    assert not ttl(stub, short).found
    assert get(stub, k) == b"v"  # the long TTL is untouched


def test_set_without_ttl_clears_an_existing_ttl(stub, keys):
    k = keys("k")
    stub.Set(pb.SetRequest(key=k, value=b"v1", ttl_ms=LONG_TTL_MS))
    assert stub.Set(pb.SetRequest(key=k, value=b"v2")).applied
    reply = ttl(stub, k)
    assert reply.found and not reply.has_ttl
    assert get(stub, k) == b"v2"


def test_set_if_absent(stub, keys):
    k = keys("k")
    absent = pb.SET_CONDITION_IF_ABSENT
    assert stub.Set(pb.SetRequest(key=k, value=b"first", condition=absent)).applied
    assert not stub.Set(pb.SetRequest(key=k, value=b"second", condition=absent)).applied
    assert get(stub, k) == b"first"


def test_set_if_absent_applies_after_expiry(stub, keys):
    k = keys("k")
    stub.Set(pb.SetRequest(key=k, value=b"old", ttl_ms=SHORT_TTL_MS))
    assert eventually(lambda: not stub.Exists(pb.ExistsRequest(key=k)).exists)
    request = pb.SetRequest(key=k, value=b"new", condition=pb.SET_CONDITION_IF_ABSENT)
    assert stub.Set(request).applied
    assert get(stub, k) == b"new"


def test_set_if_present(stub, keys):
    k = keys("k")
    present = pb.SET_CONDITION_IF_PRESENT
    assert not stub.Set(pb.SetRequest(key=k, value=b"x", condition=present)).applied
    assert get(stub, k) is None
    stub.Set(pb.SetRequest(key=k, value=b"old"))
    assert stub.Set(pb.SetRequest(key=k, value=b"new", condition=present)).applied
    assert get(stub, k) == b"new"


def test_set_keep_ttl(stub, keys):
    k = keys("k")
    stub.Set(pb.SetRequest(key=k, value=b"v1", ttl_ms=LONG_TTL_MS))
    assert stub.Set(pb.SetRequest(key=k, value=b"v2", keep_ttl=True)).applied
    assert get(stub, k) == b"v2"
    reply = ttl(stub, k)
    assert reply.has_ttl
    assert LONG_TTL_MS - 5_000 < reply.ttl_ms <= LONG_TTL_MS

    # keep_ttl on a key without a TTL (or a new key) leaves it without one.
    fresh = keys("fresh")
    assert stub.Set(pb.SetRequest(key=fresh, value=b"v", keep_ttl=True)).applied
    reply = ttl(stub, fresh)
    assert reply.found and not reply.has_ttl


def test_set_keep_ttl_with_if_present(stub, keys):
    k = keys("k")
    request = pb.SetRequest(key=k, value=b"v", keep_ttl=True, condition=pb.SET_CONDITION_IF_PRESENT)
    assert not stub.Set(request).applied
    stub.Set(pb.SetRequest(key=k, value=b"v0", ttl_ms=LONG_TTL_MS))
    assert stub.Set(request).applied
    assert get(stub, k) == b"v"
    assert ttl(stub, k).has_ttl


# ---- Delete / Exists ---------------------------------------------------------------


def test_delete(stub, keys):
    k = keys("k")
    stub.Set(pb.SetRequest(key=k, value=b"v"))
    assert stub.Delete(pb.DeleteRequest(key=k)).deleted
    assert get(stub, k) is None
    assert not stub.Delete(pb.DeleteRequest(key=k)).deleted
    assert not stub.Delete(pb.DeleteRequest(key=keys("never"))).deleted


def test_delete_expired_key_reports_not_deleted(stub, keys):
    k = keys("k")
    stub.Set(pb.SetRequest(key=k, value=b"v", ttl_ms=SHORT_TTL_MS))
    time.sleep(SHORT_TTL_MS / 1000 + 0.05)
    assert not stub.Delete(pb.DeleteRequest(key=k)).deleted


def test_exists(stub, keys):
    k = keys("k")
    assert not stub.Exists(pb.ExistsRequest(key=k)).exists
    stub.Set(pb.SetRequest(key=k, value=b""))
    assert stub.Exists(pb.ExistsRequest(key=k)).exists
    stub.Delete(pb.DeleteRequest(key=k))
    assert not stub.Exists(pb.ExistsRequest(key=k)).exists


# ---- Expire / Ttl --------------------------------------------------------------


def test_ttl_conventions(stub, keys):
    missing = ttl(stub, keys("missing"))
    assert (missing.found, missing.has_ttl) == (False, False)
    k = keys("k")
    stub.Set(pb.SetRequest(key=k, value=b"v"))
    no_ttl = ttl(stub, k)
    assert (no_ttl.found, no_ttl.has_ttl) == (True, False)


def test_expire_sets_a_ttl(stub, keys):
    k = keys("k")
    assert not stub.Expire(pb.ExpireRequest(key=k, ttl_ms=LONG_TTL_MS)).applied
    assert not ttl(stub, k).found  # Expire did not create the key

    stub.Set(pb.SetRequest(key=k, value=b"v"))
    assert stub.Expire(pb.ExpireRequest(key=k, ttl_ms=LONG_TTL_MS)).applied
    reply = ttl(stub, k)
    assert reply.found and reply.has_ttl
    assert LONG_TTL_MS - 5_000 < reply.ttl_ms <= LONG_TTL_MS
    assert get(stub, k) == b"v"

    # A new Expire replaces the deadline, shorter or longer.
    assert stub.Expire(pb.ExpireRequest(key=k, ttl_ms=SHORT_TTL_MS)).applied
    assert ttl(stub, k).ttl_ms <= SHORT_TTL_MS
    assert eventually(lambda: get(stub, k) is None)


def test_expire_clear_removes_the_ttl(stub, keys):
    k = keys("k")
    stub.Set(pb.SetRequest(key=k, value=b"v", ttl_ms=500))
    assert stub.Expire(pb.ExpireRequest(key=k, clear=True)).applied
    reply = ttl(stub, k)
    assert reply.found and not reply.has_ttl
    time.sleep(0.55)
    assert get(stub, k) == b"v"  # it outlived its old deadline

    # Clearing again (no TTL now) or on a missing key applies nothing.
    assert not stub.Expire(pb.ExpireRequest(key=k, clear=True)).applied
    assert not stub.Expire(pb.ExpireRequest(key=keys("missing"), clear=True)).applied
    assert get(stub, k) == b"v"


# ---- Incr --------------------------------------------------------------------------


def test_incr_missing_key_counts_as_zero(stub, keys):
    k = keys("k")
    assert stub.Incr(pb.IncrRequest(key=k, delta=5)).value == 5
    assert get(stub, k) == b"5"
    assert stub.Incr(pb.IncrRequest(key=k, delta=-8)).value == -3
    assert get(stub, k) == b"-3"
    # delta 0 reads the value (and creates a missing key with 0, as Redis INCRBY 0 does).
    assert stub.Incr(pb.IncrRequest(key=k, delta=0)).value == -3
    assert stub.Incr(pb.IncrRequest(key=keys("zero"), delta=0)).value == 0
    assert get(stub, keys("zero")) == b"0"


def test_incr_existing_integer_value(stub, keys):
    k = keys("k")
    stub.Set(pb.SetRequest(key=k, value=b"41"))
    assert stub.Incr(pb.IncrRequest(key=k, delta=1)).value == 42
    assert get(stub, k) == b"42"
    stub.Set(pb.SetRequest(key=k, value=b"-9223372036854775808"))
    assert stub.Incr(pb.IncrRequest(key=k, delta=2**63 - 1)).value == -1
    assert get(stub, k) == b"-1"


def test_incr_keeps_the_ttl(stub, keys):
    k = keys("k")
    stub.Set(pb.SetRequest(key=k, value=b"10", ttl_ms=LONG_TTL_MS))
    assert stub.Incr(pb.IncrRequest(key=k, delta=3)).value == 13
    reply = ttl(stub, k)
    assert reply.has_ttl
    assert LONG_TTL_MS - 5_000 < reply.ttl_ms <= LONG_TTL_MS

    short = keys("short")
    stub.Set(pb.SetRequest(key=short, value=b"1", ttl_ms=500))
    assert stub.Incr(pb.IncrRequest(key=short, delta=1)).value == 2
    assert eventually(lambda: get(stub, short) is None)


# ---- multi-key ---------------------------------------------------------------------


def test_mget_keeps_request_order_with_missing_keys(stub, keys):
    stub.Set(pb.SetRequest(key=keys("a"), value=b"A"))
    stub.Set(pb.SetRequest(key=keys("c"), value=b"C"))
    order = [keys("c"), keys("missing1"), keys("a"), keys("missing2"), keys("c")]
    reply = stub.MGet(pb.MGetRequest(keys=order))
    assert [(r.found, r.value) for r in reply.results] == [
        (True, b"C"),
        (False, b""),
        (True, b"A"),
        (False, b""),
        (True, b"C"),
    ]
    assert len(stub.MGet(pb.MGetRequest()).results) == 0


def test_mget_many_keys_across_slots(stub, keys):
    ks = [keys(f"k{i}") for i in range(500)]
    stub.MSet(pb.MSetRequest(entries=[pb.SetRequest(key=k, value=k[::-1]) for k in ks[::2]]))
    reply = stub.MGet(pb.MGetRequest(keys=ks))
    assert [r.value if r.found else None for r in reply.results] == [
        k[::-1] if i % 2 == 0 else None for i, k in enumerate(ks)
    ]


def test_mset_writes_every_entry(stub, keys):
    entries = [
        pb.SetRequest(key=keys("a"), value=b"1"),
        pb.SetRequest(key=keys("b"), value=b"2", ttl_ms=LONG_TTL_MS),
        pb.SetRequest(key=keys("c"), value=b"3"),
    ]
    reply = stub.MSet(pb.MSetRequest(entries=entries))
    assert list(reply.applied) == [True, True, True]
    got = stub.MGet(pb.MGetRequest(keys=[keys("a"), keys("b"), keys("c")]))
    assert [r.value for r in got.results] == [b"1", b"2", b"3"]
    assert ttl(stub, keys("b")).has_ttl
    assert not ttl(stub, keys("a")).has_ttl


def test_mset_conditions_apply_per_entry_in_order(stub, keys):
    stub.Set(pb.SetRequest(key=keys("held"), value=b"old"))
    entries = [
        pb.SetRequest(key=keys("held"), value=b"nx", condition=pb.SET_CONDITION_IF_ABSENT),
        pb.SetRequest(key=keys("new"), value=b"xx", condition=pb.SET_CONDITION_IF_PRESENT),
        pb.SetRequest(key=keys("new"), value=b"first", condition=pb.SET_CONDITION_IF_ABSENT),
        # Sees the entry just before it.
        pb.SetRequest(key=keys("new"), value=b"second", condition=pb.SET_CONDITION_IF_PRESENT),
    ]
    reply = stub.MSet(pb.MSetRequest(entries=entries))
    assert list(reply.applied) == [False, False, True, True]
    assert get(stub, keys("held")) == b"old"
    assert get(stub, keys("new")) == b"second"


def test_mdelete_counts_existing_keys(stub, keys):
    for name in ("a", "b", "c"):
        stub.Set(pb.SetRequest(key=keys(name), value=b"v"))
    request = pb.MDeleteRequest(keys=[keys("a"), keys("missing"), keys("c"), keys("a")])
    assert stub.MDelete(request).deleted == 2
    assert get(stub, keys("a")) is None
    assert get(stub, keys("c")) is None
    assert get(stub, keys("b")) == b"v"
    assert stub.MDelete(pb.MDeleteRequest(keys=[keys("a"), keys("c")])).deleted == 0


# ---- Pipeline ----------------------------------------------------------------------


def test_pipeline_batches_echo_ids_and_apply_in_order(stub, keys, open_pipeline):
    k, n = keys("k"), keys("n")
    stream = open_pipeline(stub)

    first = stream.send(
        pb.Operation(id=10, set=pb.SetRequest(key=k, value=b"v1")),
        pb.Operation(id=11, get=pb.GetRequest(key=k)),
        pb.Operation(id=12, incr=pb.IncrRequest(key=n, delta=7)),
        pb.Operation(id=13, exists=pb.ExistsRequest(key=k)),
    )
    assert [r.id for r in first] == [10, 11, 12, 13]
    assert first[0].set.applied
    assert first[1].get.found and first[1].get.value == b"v1"
    assert first[2].incr.value == 7
    assert first[3].exists.exists

    second = stream.send(
        pb.Operation(id=2**64 - 1, expire=pb.ExpireRequest(key=k, ttl_ms=LONG_TTL_MS)),
        pb.Operation(id=0, ttl=pb.TtlRequest(key=k)),
        pb.Operation(id=7, mset=pb.MSetRequest(entries=[pb.SetRequest(key=keys("m"), value=b"M")])),
        pb.Operation(id=7, mget=pb.MGetRequest(keys=[k, keys("m"), keys("missing")])),
    )
    assert [r.id for r in second] == [2**64 - 1, 0, 7, 7]
    assert second[0].expire.applied
    assert second[1].ttl.has_ttl and second[1].ttl.ttl_ms > 0
    assert list(second[2].mset.applied) == [True]
    assert [(r.found, r.value) for r in second[3].mget.results] == [
        (True, b"v1"),
        (True, b"M"),
        (False, b""),
    ]

    third = stream.send(
        pb.Operation(id=20, mdelete=pb.MDeleteRequest(keys=[keys("m"), n])),
        pb.Operation(id=21, delete=pb.DeleteRequest(key=k)),
        pb.Operation(id=22, get=pb.GetRequest(key=k)),
    )
    assert [r.id for r in third] == [20, 21, 22]
    assert third[0].mdelete.deleted == 2
    assert third[1].delete.deleted
    assert not third[2].get.found

    # An empty batch gets an empty reply, and the stream still works afterwards.
    assert stream.send() == []
    assert stream.send(pb.Operation(id=1, get=pb.GetRequest(key=n)))[0].get.found is False
    assert stream.close().name == "OK"

    # The stream's writes are visible to unary calls.
    assert get(stub, k) is None
    assert get(stub, keys("m")) is None


def test_pipeline_large_batch(stub, keys, open_pipeline):
    stream = open_pipeline(stub)
    sets = [
        pb.Operation(id=i, set=pb.SetRequest(key=keys(f"k{i}"), value=str(i).encode()))
        for i in range(1000)
    ]
    results = stream.send(*sets)
    assert [r.id for r in results] == list(range(1000))
    assert all(r.set.applied for r in results)
    gets = [pb.Operation(id=i, get=pb.GetRequest(key=keys(f"k{i}"))) for i in range(1000)]
    results = stream.send(*gets)
    assert [r.get.value for r in results] == [str(i).encode() for i in range(1000)]
    assert stream.close().name == "OK"


def test_pipeline_writes_then_unary_reads(stub, keys, open_pipeline):
    stream = open_pipeline(stub)
    stream.send(pb.Operation(id=1, set=pb.SetRequest(key=keys("k"), value=b"from-stream")))
    # Still open: the write is visible before the stream ends.
    assert get(stub, keys("k")) == b"from-stream"
    stub.Set(pb.SetRequest(key=keys("k"), value=b"from-unary"))
    (result,) = stream.send(pb.Operation(id=2, get=pb.GetRequest(key=keys("k"))))
    assert result.get.value == b"from-unary"
    assert stream.close().name == "OK"
