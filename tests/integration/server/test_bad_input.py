"""Bad requests get the right status and a message naming the problem, and change nothing."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from slotcache.v1 import admin_pb2, admin_pb2_grpc, cache_pb2_grpc
from slotcache.v1 import cache_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
KIB = 1024
MIB = 1024 * KIB
DEFAULT_MAX_KEY = 64 * KIB
DEFAULT_MAX_VALUE = 16 * MIB
LONG_TTL_MS = 600_000


def rpc_fails(method, request, code: grpc.StatusCode, *fragments: str) -> grpc.RpcError:
    """Call ``method`` and check it fails with ``code`` and a message containing ``fragments``."""
    with pytest.raises(grpc.RpcError) as info:
        method(request, timeout=20)
    err = info.value
    assert err.code() == code, f"{err.code()}: {err.details()}"
    for fragment in fragments:
        assert fragment in err.details(), f"{fragment!r} not in {err.details()!r}"
    return err


def error_reason(err: grpc.RpcError) -> str:
    status = rpc_status.from_call(err)
    assert status is not None, "no google.rpc.Status in the trailers"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    raise AssertionError("no ErrorInfo detail")


def get(stub, key: bytes) -> bytes | None:
    reply = stub.Get(pb.GetRequest(key=key), timeout=20)
    return reply.value if reply.found else None


def ttl(stub, key: bytes) -> pb.TtlReply:
    return stub.Ttl(pb.TtlRequest(key=key), timeout=5)


def stats(admin_stub) -> dict[str, int]:
    return dict(admin_stub.Info(admin_pb2.InfoRequest(), timeout=5).stats)


def footprint(admin_stub) -> tuple[int, int, int]:
    """What a refused write must leave as it was: keys, keys with a TTL, memory used.

    Stable between calls only while no key on the server is about to expire, so
    tests on the shared server here use long TTLs.
    """
    s = stats(admin_stub)
    return s["keys"], s["keys.with_ttl"], s["memory.used"]


# Every single-key RPC, as (name, request for a key).
SINGLE_KEY_RPCS = [
    ("Get", lambda k: pb.GetRequest(key=k)),
    ("Set", lambda k: pb.SetRequest(key=k, value=b"v")),
    ("Delete", lambda k: pb.DeleteRequest(key=k)),
    ("Exists", lambda k: pb.ExistsRequest(key=k)),
    ("Expire", lambda k: pb.ExpireRequest(key=k, ttl_ms=1000)),
    ("Ttl", lambda k: pb.TtlRequest(key=k)),
    ("Incr", lambda k: pb.IncrRequest(key=k, delta=1)),
]
RPC_IDS = [name for name, _ in SINGLE_KEY_RPCS]


# ---- keys ----------------------------------------------------------------------------


@pytest.mark.parametrize(("rpc", "make"), SINGLE_KEY_RPCS, ids=RPC_IDS)
def test_empty_key_single_key_rpcs(stub, admin_stub, rpc, make):
    before = footprint(admin_stub)
    rpc_fails(getattr(stub, rpc), make(b""), INVALID, "key must not be empty")
    assert footprint(admin_stub) == before


def test_empty_key_in_mget(stub, keys):
    stub.Set(pb.SetRequest(key=keys("a"), value=b"A"))
    request = pb.MGetRequest(keys=[keys("a"), b"", keys("b")])
    rpc_fails(stub.MGet, request, INVALID, "keys[1] must not be empty")


def test_empty_key_in_mset_writes_nothing(stub, admin_stub, keys):
    stub.Set(pb.SetRequest(key=keys("a"), value=b"old"))
    before = footprint(admin_stub)
    entries = [
        pb.SetRequest(key=keys("a"), value=b"new"),
        pb.SetRequest(key=keys("b"), value=b"new"),
        pb.SetRequest(key=b"", value=b"new"),
    ]
    rpc_fails(stub.MSet, pb.MSetRequest(entries=entries), INVALID, "entries[2].key", "empty")
    assert get(stub, keys("a")) == b"old"
    assert get(stub, keys("b")) is None
    assert footprint(admin_stub) == before


def test_empty_key_in_mdelete_deletes_nothing(stub, keys):
    stub.Set(pb.SetRequest(key=keys("a"), value=b"A"))
    stub.Set(pb.SetRequest(key=keys("b"), value=b"B"))
    request = pb.MDeleteRequest(keys=[keys("a"), b"", keys("b")])
    rpc_fails(stub.MDelete, request, INVALID, "keys[1] must not be empty")
    assert get(stub, keys("a")) == b"A"
    assert get(stub, keys("b")) == b"B"


@pytest.mark.parametrize(("rpc", "make"), SINGLE_KEY_RPCS, ids=RPC_IDS)
def test_key_over_default_limit_single_key_rpcs(stub, admin_stub, rpc, make):
    key = b"k" * (DEFAULT_MAX_KEY + 1)
    before = footprint(admin_stub)
    rpc_fails(getattr(stub, rpc), make(key), INVALID, f"is {DEFAULT_MAX_KEY + 1} bytes", "limit")
    assert footprint(admin_stub) == before
    assert get(stub, key[:DEFAULT_MAX_KEY]) is None


def test_key_over_default_limit_in_multi_key_rpcs(stub, keys):
    big = b"k" * (DEFAULT_MAX_KEY + 1)
    stub.Set(pb.SetRequest(key=keys("a"), value=b"A"))
    rpc_fails(stub.MGet, pb.MGetRequest(keys=[keys("a"), big]), INVALID, "keys[1]", "limit")
    rpc_fails(stub.MDelete, pb.MDeleteRequest(keys=[keys("a"), big]), INVALID, "keys[1]")
    entries = [pb.SetRequest(key=keys("b"), value=b"B"), pb.SetRequest(key=big, value=b"x")]
    rpc_fails(stub.MSet, pb.MSetRequest(entries=entries), INVALID, "entries[1].key", "limit")
    assert get(stub, keys("a")) == b"A"
    assert get(stub, keys("b")) is None


def test_key_at_default_limit_is_accepted(stub):
    key = b"L" * DEFAULT_MAX_KEY
    try:
        assert stub.Set(pb.SetRequest(key=key, value=b"v")).applied
        assert get(stub, key) == b"v"
        assert stub.MGet(pb.MGetRequest(keys=[key])).results[0].value == b"v"
    finally:
        stub.Delete(pb.DeleteRequest(key=key))


def test_small_key_and_value_limits_from_flags(servers):
    server = servers("--max-key-bytes", "16", "--max-value-bytes", "32")
    with grpc.insecure_channel(server.address) as channel:
        stub = cache_pb2_grpc.CacheStub(channel)
        ok_key, big_key = b"k" * 16, b"k" * 17
        assert stub.Set(pb.SetRequest(key=ok_key, value=b"v" * 32)).applied
        assert get(stub, ok_key) == b"v" * 32

        rpc_fails(stub.Set, pb.SetRequest(key=big_key, value=b"v"), INVALID, "17 bytes", "16")
        rpc_fails(stub.Get, pb.GetRequest(key=big_key), INVALID, "17 bytes", "16")
        rpc_fails(stub.Incr, pb.IncrRequest(key=big_key, delta=1), INVALID, "17 bytes")
        rpc_fails(stub.MGet, pb.MGetRequest(keys=[ok_key, big_key]), INVALID, "keys[1]", "16")
        rpc_fails(
            stub.Set, pb.SetRequest(key=ok_key, value=b"w" * 33), INVALID, "value", "33", "32"
        )
        entries = [
            pb.SetRequest(key=b"other", value=b"x"),
            pb.SetRequest(key=ok_key, value=b"w" * 33),
        ]
        rpc_fails(stub.MSet, pb.MSetRequest(entries=entries), INVALID, "entries[1].value", "32")

        assert get(stub, ok_key) == b"v" * 32
        assert get(stub, b"other") is None
        assert stub.MGet(pb.MGetRequest(keys=[big_key[:16]])).results[0].value == b"v" * 32


# ---- values ----------------------------------------------------------------------------


@pytest.mark.slow
def test_value_over_default_limit(stub, keys):
    k = keys("k")
    stub.Set(pb.SetRequest(key=k, value=b"old"))
    too_big = b"x" * (DEFAULT_MAX_VALUE + 1)
    rpc_fails(
        stub.Set,
        pb.SetRequest(key=k, value=too_big),
        INVALID,
        f"value is {DEFAULT_MAX_VALUE + 1} bytes",
        str(DEFAULT_MAX_VALUE),
    )
    rpc_fails(
        stub.MSet,
        pb.MSetRequest(
            entries=[pb.SetRequest(key=keys("m"), value=b"m"), pb.SetRequest(key=k, value=too_big)]
        ),
        INVALID,
        "entries[1].value",
    )
    assert get(stub, k) == b"old"
    assert get(stub, keys("m")) is None

    at_limit = b"y" * DEFAULT_MAX_VALUE
    try:
        assert stub.Set(pb.SetRequest(key=k, value=at_limit)).applied
        assert get(stub, k) == at_limit
    finally:
        stub.Delete(pb.DeleteRequest(key=k))


# ---- TTLs and flags --------------------------------------------------------------------


def test_negative_ttl_on_set(stub, keys):
    k = keys("k")
    stub.Set(pb.SetRequest(key=k, value=b"old"))
    rpc_fails(stub.Set, pb.SetRequest(key=k, value=b"new", ttl_ms=-1), INVALID, "ttl_ms", "-1")
    assert get(stub, k) == b"old"
    assert not ttl(stub, k).has_ttl
    rpc_fails(stub.Set, pb.SetRequest(key=keys("new"), value=b"v", ttl_ms=-100), INVALID)
    assert get(stub, keys("new")) is None


def test_negative_ttl_on_expire(stub, keys):
    k = keys("k")
    stub.Set(pb.SetRequest(key=k, value=b"v", ttl_ms=LONG_TTL_MS))
    rpc_fails(stub.Expire, pb.ExpireRequest(key=k, ttl_ms=-5), INVALID, "ttl_ms", "negative")
    reply = ttl(stub, k)
    assert reply.has_ttl and reply.ttl_ms > LONG_TTL_MS - 5000
    assert get(stub, k) == b"v"


def test_negative_ttl_in_mset_writes_nothing(stub, keys):
    entries = [
        pb.SetRequest(key=keys("a"), value=b"A"),
        pb.SetRequest(key=keys("b"), value=b"B", ttl_ms=-1),
    ]
    rpc_fails(stub.MSet, pb.MSetRequest(entries=entries), INVALID, "entries[1].ttl_ms")
    assert get(stub, keys("a")) is None
    assert get(stub, keys("b")) is None


def test_ttl_too_large_to_hold_is_refused(stub, keys):
    k = keys("k")
    stub.Set(pb.SetRequest(key=k, value=b"old"))
    huge = 2**63 - 1
    rpc_fails(stub.Set, pb.SetRequest(key=k, value=b"new", ttl_ms=huge), INVALID, "ttl_ms")
    rpc_fails(stub.Set, pb.SetRequest(key=keys("new"), value=b"v", ttl_ms=huge), INVALID)
    rpc_fails(stub.Expire, pb.ExpireRequest(key=k, ttl_ms=huge), INVALID, "ttl_ms")
    entries = [pb.SetRequest(key=keys("m"), value=b"m", ttl_ms=huge)]
    rpc_fails(stub.MSet, pb.MSetRequest(entries=entries), INVALID, "entries[0].ttl_ms")
    assert get(stub, k) == b"old"
    assert not ttl(stub, k).has_ttl
    assert get(stub, keys("new")) is None
    assert get(stub, keys("m")) is None
    # The key is still fully usable.
    assert stub.Expire(pb.ExpireRequest(key=k, ttl_ms=LONG_TTL_MS)).applied
    assert ttl(stub, k).has_ttl


def test_keep_ttl_with_ttl_ms(stub, keys):
    k = keys("k")
    stub.Set(pb.SetRequest(key=k, value=b"old", ttl_ms=LONG_TTL_MS))
    request = pb.SetRequest(key=k, value=b"new", ttl_ms=1000, keep_ttl=True)
    rpc_fails(stub.Set, request, INVALID, "keep_ttl", "ttl_ms")
    assert get(stub, k) == b"old"
    assert ttl(stub, k).ttl_ms > LONG_TTL_MS - 5000
    entries = [pb.SetRequest(key=keys("m"), value=b"m", ttl_ms=5, keep_ttl=True)]
    rpc_fails(stub.MSet, pb.MSetRequest(entries=entries), INVALID, "entries[0].keep_ttl")
    assert get(stub, keys("m")) is None


def test_unknown_set_condition(stub, keys):
    k = keys("k")
    stub.Set(pb.SetRequest(key=k, value=b"old"))
    rpc_fails(stub.Set, pb.SetRequest(key=k, value=b"new", condition=7), INVALID, "condition 7")
    rpc_fails(stub.Set, pb.SetRequest(key=keys("n"), value=b"v", condition=-1), INVALID)
    entries = [
        pb.SetRequest(key=keys("m"), value=b"m"),
        pb.SetRequest(key=k, value=b"new", condition=3),
    ]
    rpc_fails(stub.MSet, pb.MSetRequest(entries=entries), INVALID, "entries[1].condition")
    assert get(stub, k) == b"old"
    assert get(stub, keys("n")) is None
    assert get(stub, keys("m")) is None


def test_expire_zero_without_clear(stub, keys):
    k = keys("k")
    stub.Set(pb.SetRequest(key=k, value=b"v", ttl_ms=LONG_TTL_MS))
    rpc_fails(stub.Expire, pb.ExpireRequest(key=k, ttl_ms=0), INVALID, "ttl_ms must be > 0")
    assert get(stub, k) == b"v"
    assert ttl(stub, k).has_ttl


def test_expire_clear_with_ttl(stub, keys):
    k = keys("k")
    stub.Set(pb.SetRequest(key=k, value=b"v", ttl_ms=LONG_TTL_MS))
    request = pb.ExpireRequest(key=k, ttl_ms=1000, clear=True)
    rpc_fails(stub.Expire, request, INVALID, "ttl_ms must be 0 when clear is set")
    reply = ttl(stub, k)
    assert reply.has_ttl and reply.ttl_ms > LONG_TTL_MS - 5000


# ---- Incr ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [b"abc", b"1.5", b" 1", b"1 ", b"01", b"+1", b"-0", b"", b"1e3", b"9223372036854775808"],
)
def test_incr_on_non_integer(stub, keys, value):
    k = keys("k")
    stub.Set(pb.SetRequest(key=k, value=value, ttl_ms=LONG_TTL_MS))
    err = rpc_fails(stub.Incr, pb.IncrRequest(key=k, delta=1), PRECONDITION, "not an integer")
    assert error_reason(err) == "NOT_INTEGER"
    assert get(stub, k) == value
    assert ttl(stub, k).has_ttl


@pytest.mark.parametrize(
    ("start", "delta"),
    [(2**63 - 1, 1), (2**63 - 10, 100), (-(2**63), -1), (-5, -(2**63))],
)
def test_incr_overflow(stub, keys, start, delta):
    k = keys("k")
    stub.Set(pb.SetRequest(key=k, value=str(start).encode()))
    err = rpc_fails(stub.Incr, pb.IncrRequest(key=k, delta=delta), PRECONDITION, "overflow")
    assert error_reason(err) == "INTEGER_OVERFLOW"
    assert get(stub, k) == str(start).encode()


# ---- MSet atomicity ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        pb.SetRequest(key=b"", value=b"x"),
        pb.SetRequest(key=b"bad", value=b"x", ttl_ms=-1),
        pb.SetRequest(key=b"bad", value=b"x", ttl_ms=1, keep_ttl=True),
        pb.SetRequest(key=b"bad", value=b"x", condition=9),
        pb.SetRequest(key=b"k" * (DEFAULT_MAX_KEY + 1), value=b"x"),
    ],
    ids=["empty-key", "negative-ttl", "keep-ttl-and-ttl", "bad-condition", "big-key"],
)
def test_mset_with_one_bad_entry_writes_none(stub, admin_stub, keys, bad):
    stub.Set(pb.SetRequest(key=keys("held"), value=b"old"))
    before = footprint(admin_stub)
    entries = [
        pb.SetRequest(key=keys("held"), value=b"new"),
        pb.SetRequest(key=keys("a"), value=b"A", ttl_ms=LONG_TTL_MS),
        bad,
        pb.SetRequest(key=keys("b"), value=b"B"),
    ]
    rpc_fails(stub.MSet, pb.MSetRequest(entries=entries), INVALID, "entries[2].")
    assert footprint(admin_stub) == before
    reply = stub.MGet(pb.MGetRequest(keys=[keys("held"), keys("a"), keys("b")]))
    assert [(r.found, r.value) for r in reply.results] == [
        (True, b"old"),
        (False, b""),
        (False, b""),
    ]


# ---- Pipeline ----------------------------------------------------------------------------


def test_pipeline_unknown_operation_fails_alone_and_stream_continues(stub, keys, open_pipeline):
    k = keys("k")
    stream = open_pipeline(stub)
    results = stream.send(
        pb.Operation(id=1, set=pb.SetRequest(key=k, value=b"v1")),
        pb.Operation(id=2),  # no op set: what an older server sees for a newer op
        pb.Operation(id=3, get=pb.GetRequest(key=k)),
    )
    assert [r.id for r in results] == [1, 2, 3]
    assert results[0].WhichOneof("result") == "set" and results[0].set.applied
    assert results[1].WhichOneof("result") == "error"
    assert results[1].error.code == INVALID.value[0] == 3
    assert "unknown operation" in results[1].error.message
    assert results[2].WhichOneof("result") == "get" and results[2].get.value == b"v1"

    # The same stream keeps working, errors included.
    for batch in range(3):
        value = f"v{batch + 2}".encode()
        results = stream.send(
            pb.Operation(id=10, set=pb.SetRequest(key=k, value=value)),
            pb.Operation(id=11),
            pb.Operation(id=12, get=pb.GetRequest(key=k)),
            pb.Operation(id=13, incr=pb.IncrRequest(key=keys("n"), delta=1)),
        )
        assert [r.WhichOneof("result") for r in results] == ["set", "error", "get", "incr"]
        assert results[1].error.code == 3
        assert results[2].get.value == value
        assert results[3].incr.value == batch + 1
    assert stream.close() == grpc.StatusCode.OK
    assert get(stub, k) == b"v4"


def test_pipeline_bad_operations_get_their_own_errors(stub, keys, open_pipeline):
    k = keys("k")
    stub.Set(pb.SetRequest(key=k, value=b"text"))
    stream = open_pipeline(stub)
    results = stream.send(
        pb.Operation(id=1, get=pb.GetRequest(key=b"")),
        pb.Operation(id=2, incr=pb.IncrRequest(key=k, delta=1)),
        pb.Operation(id=3, set=pb.SetRequest(key=k, value=b"x", ttl_ms=-1)),
        pb.Operation(id=4, expire=pb.ExpireRequest(key=k, ttl_ms=0)),
        pb.Operation(
            id=5,
            mset=pb.MSetRequest(
                entries=[pb.SetRequest(key=keys("m"), value=b"m"), pb.SetRequest(key=b"")]
            ),
        ),
        pb.Operation(id=6, get=pb.GetRequest(key=k)),
    )
    assert [r.id for r in results] == [1, 2, 3, 4, 5, 6]
    errors = [r.error for r in results[:5]]
    assert all(r.WhichOneof("result") == "error" for r in results[:5])
    assert [e.code for e in errors] == [3, 9, 3, 3, 3]
    assert "must not be empty" in errors[0].message
    assert errors[1].reason == "NOT_INTEGER"
    assert "negative" in errors[2].message
    assert "entries[1].key" in errors[4].message
    assert results[5].get.value == b"text"
    assert stream.send(pb.Operation(id=7, get=pb.GetRequest(key=keys("m"))))[0].get.found is False
    assert stream.close() == grpc.StatusCode.OK


# ---- memory full under noeviction ------------------------------------------------------------


def test_noeviction_full_refuses_writes_but_serves_reads_and_deletes(servers, open_pipeline):
    server = servers("--maxmemory", "1mb", "--maxmemory-policy", "noeviction")
    with grpc.insecure_channel(server.address) as channel:
        stub = cache_pb2_grpc.CacheStub(channel)
        admin = admin_pb2_grpc.AdminStub(channel)
        value = b"v" * (8 * KIB)
        written: list[bytes] = []
        refused = None
        for i in range(1000):
            key = f"fill-{i}".encode()
            try:
                stub.Set(pb.SetRequest(key=key, value=value), timeout=5)
            except grpc.RpcError as exc:
                refused = exc
                break
            written.append(key)
        assert refused is not None, "1 MiB never filled up"
        assert refused.code() == EXHAUSTED
        assert "maxmemory" in refused.details()
        assert 64 < len(written) < 128
        assert get(stub, f"fill-{len(written)}".encode()) is None
        # Top up with the smallest entries, so no new key fits at all.
        for i in range(1000):
            try:
                stub.Set(pb.SetRequest(key=f"s{i}".encode(), value=b"s"), timeout=5)
            except grpc.RpcError as exc:
                assert exc.code() == EXHAUSTED
                break
        else:
            raise AssertionError("small entries never filled up")
        s = stats(admin)
        assert s["memory.max"] == MIB
        assert s["memory.used"] <= MIB
        assert s["evicted"] == 0
        before = footprint(admin)

        # Every kind of write that needs room is refused and changes nothing.
        rpc_fails(stub.Set, pb.SetRequest(key=b"new", value=value), EXHAUSTED, "maxmemory")
        rpc_fails(stub.Incr, pb.IncrRequest(key=b"counter", delta=1), EXHAUSTED)
        entries = [pb.SetRequest(key=b"m1", value=b"x"), pb.SetRequest(key=b"m2", value=value)]
        rpc_fails(stub.MSet, pb.MSetRequest(entries=entries), EXHAUSTED)
        bigger = pb.SetRequest(key=written[0], value=value * 2)
        rpc_fails(stub.Set, bigger, EXHAUSTED)
        assert footprint(admin) == before
        assert get(stub, b"new") is None
        assert get(stub, b"counter") is None
        assert get(stub, b"m1") is None
        stream = open_pipeline(stub)
        results = stream.send(
            pb.Operation(id=1, set=entries[1]),
            pb.Operation(id=2, get=pb.GetRequest(key=written[0])),
        )
        assert results[0].error.code == EXHAUSTED.value[0]
        assert results[1].get.value == value
        assert stream.close() == grpc.StatusCode.OK

        # Reads keep working.
        assert get(stub, written[0]) == value
        reply = stub.MGet(pb.MGetRequest(keys=[written[-1], b"new"]))
        assert [(r.found, r.value) for r in reply.results] == [(True, value), (False, b"")]
        assert stub.Exists(pb.ExistsRequest(key=written[1])).exists
        assert stub.Ttl(pb.TtlRequest(key=written[1])).found

        # Deletes work and make room for new writes.
        assert stub.MDelete(pb.MDeleteRequest(keys=written[:4])).deleted == 4
        assert stub.Delete(pb.DeleteRequest(key=written[4])).deleted
        assert stats(admin)["memory.used"] < before[2]
        assert stub.Set(pb.SetRequest(key=b"new", value=value)).applied
        assert get(stub, b"new") == value
        assert stub.Incr(pb.IncrRequest(key=b"counter", delta=2)).value == 2
