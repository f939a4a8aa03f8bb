"""The Python SDK (Client and AsyncClient) against a real server.

Most tests run once per client: ``sdk`` is either a :class:`slotcache.Client` or an
:class:`slotcache.AsyncClient` driven on its own event loop thread, so one test body
checks that both behave the same.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

import slotcache
from slotcache.ctl.launcher import free_port
from slotcache.v1 import admin_pb2, admin_pb2_grpc
from tests.support.nodes import eventually
from tests.support.sdk import AsyncDriver, open_client

LONG_TTL_MS = 600_000
SHORT_TTL_MS = 150


@pytest.fixture
def sdk(kind, server, request) -> Iterator[object]:
    if kind == "sync":
        yield request.getfixturevalue("client")
        return
    c = AsyncDriver(server.address)
    try:
        yield c
    finally:
        c.close()


def op_count(server) -> int:
    """Operations the server has counted, of any kind and outcome."""
    with grpc.insecure_channel(server.address) as channel:
        reply = admin_pb2_grpc.AdminStub(channel).Info(admin_pb2.InfoRequest(), timeout=5)
    return sum(v for k, v in reply.stats.items() if k.startswith("ops."))


# ---- every method -----------------------------------------------------------------------


def test_get_and_set(sdk, keys):
    k = keys("k")
    assert sdk.get(k) is None
    assert sdk.set(k, b"v1") is True
    assert sdk.get(k) == b"v1"
    assert sdk.set(k, b"v2") is True
    assert sdk.get(k) == b"v2"
    # bytes-like keys and values are accepted and come back as bytes.
    assert sdk.set(bytearray(keys("ba")), memoryview(b"mv")) is True
    assert sdk.get(memoryview(keys("ba"))) == b"mv"
    assert sdk.set(keys("empty"), b"") is True
    assert sdk.get(keys("empty")) == b""


def test_large_value(sdk, keys):
    value = b"\x00\x01" * (3 * 1024 * 1024)  # 6 MiB, above gRPC's 4 MiB default
    assert sdk.set(keys("big"), value)
    assert sdk.get(keys("big")) == value
    assert sdk.delete(keys("big"))


def test_set_with_ttl(sdk, keys):
    assert sdk.set(keys("long"), b"v", ttl_ms=LONG_TTL_MS)
    assert LONG_TTL_MS - 5000 < sdk.ttl(keys("long")) <= LONG_TTL_MS
    assert sdk.set(keys("short"), b"v", ttl_ms=SHORT_TTL_MS)
    assert eventually(lambda: sdk.get(keys("short")) is None)
    assert sdk.ttl(keys("short")) == -2
    assert sdk.get(keys("long")) == b"v"


def test_set_conditions(sdk, keys):
    k = keys("k")
    assert sdk.set(k, b"x", if_present=True) is False
    assert sdk.get(k) is None
    assert sdk.set(k, b"first", if_absent=True) is True
    assert sdk.set(k, b"second", if_absent=True) is False
    assert sdk.get(k) == b"first"
    assert sdk.set(k, b"third", if_present=True) is True
    assert sdk.get(k) == b"third"
    with pytest.raises(ValueError, match="if_absent and if_present"):
        sdk.set(k, b"x", if_absent=True, if_present=True)
    assert sdk.get(k) == b"third"


def test_set_keep_ttl(sdk, keys):
    k = keys("k")
    sdk.set(k, b"v1", ttl_ms=LONG_TTL_MS)
    assert sdk.set(k, b"v2", keep_ttl=True)
    assert sdk.get(k) == b"v2"
    assert LONG_TTL_MS - 5000 < sdk.ttl(k) <= LONG_TTL_MS
    assert sdk.set(k, b"v3")
    assert sdk.ttl(k) == -1


def test_delete_and_exists(sdk, keys):
    k = keys("k")
    assert sdk.exists(k) is False
    assert sdk.delete(k) is False
    sdk.set(k, b"v")
    assert sdk.exists(k) is True
    assert sdk.delete(k) is True
    assert sdk.exists(k) is False
    assert sdk.get(k) is None


def test_expire_and_ttl(sdk, keys):
    k = keys("k")
    assert sdk.ttl(k) == -2
    assert sdk.expire(k, LONG_TTL_MS) is False
    assert sdk.ttl(k) == -2
    sdk.set(k, b"v")
    assert sdk.ttl(k) == -1
    assert sdk.expire(k, LONG_TTL_MS) is True
    assert LONG_TTL_MS - 5000 < sdk.ttl(k) <= LONG_TTL_MS
    assert sdk.expire(k, None) is True  # clear
    assert sdk.ttl(k) == -1
    assert sdk.expire(k, None) is False  # nothing to clear
    assert sdk.expire(k, SHORT_TTL_MS) is True
    assert eventually(lambda: sdk.exists(k) is False)
    assert sdk.ttl(k) == -2


def test_incr(sdk, keys):
    k = keys("k")
    assert sdk.incr(k) == 1
    assert sdk.incr(k, 10) == 11
    assert sdk.incr(k, -20) == -9
    assert sdk.get(k) == b"-9"
    sdk.set(keys("t"), b"100", ttl_ms=LONG_TTL_MS)
    assert sdk.incr(keys("t"), 5) == 105
    assert sdk.ttl(keys("t")) > LONG_TTL_MS - 5000


def test_mget_mset_mdelete(sdk, keys):
    assert sdk.mset({keys("a"): b"A", keys("b"): b"B"}) is None
    assert sdk.mset([(keys("c"), b"C"), (bytearray(keys("d")), b"D")], ttl_ms=LONG_TTL_MS) is None
    order = [keys("d"), keys("missing"), keys("a"), keys("c"), keys("b"), keys("a")]
    assert sdk.mget(order) == [b"D", None, b"A", b"C", b"B", b"A"]
    assert sdk.mget(k for k in [keys("b")]) == [b"B"]  # any iterable
    assert sdk.mget([]) == []
    assert sdk.ttl(keys("c")) > LONG_TTL_MS - 5000
    assert sdk.ttl(keys("a")) == -1
    assert sdk.mdelete([keys("a"), keys("b"), keys("missing")]) == 2
    assert sdk.mget([keys("a"), keys("b"), keys("c")]) == [None, None, b"C"]
    assert sdk.mdelete([]) == 0


# ---- typed errors ------------------------------------------------------------------------


def test_invalid_argument(sdk, keys):
    for call in (
        lambda: sdk.get(b""),
        lambda: sdk.set(b"", b"v"),
        lambda: sdk.incr(b""),
        lambda: sdk.mget([keys("a"), b""]),
        lambda: sdk.mset({keys("a"): b"A", b"": b"x"}),
        lambda: sdk.set(keys("a"), b"v", ttl_ms=-1),
        lambda: sdk.expire(keys("a"), 0),
    ):
        with pytest.raises(slotcache.InvalidArgument) as info:
            call()
        assert isinstance(info.value, slotcache.SlotcacheError)
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.message
    assert sdk.get(keys("a")) is None  # the bad MSet wrote nothing


def test_failed_precondition_reasons(sdk, keys):
    sdk.set(keys("text"), b"hello")
    with pytest.raises(slotcache.FailedPrecondition) as info:
        sdk.incr(keys("text"))
    assert info.value.reason == "NOT_INTEGER"
    assert "not an integer" in info.value.message
    assert sdk.get(keys("text")) == b"hello"

    sdk.set(keys("max"), b"9223372036854775807")
    with pytest.raises(slotcache.FailedPrecondition) as info:
        sdk.incr(keys("max"))
    assert info.value.reason == "INTEGER_OVERFLOW"
    assert sdk.get(keys("max")) == b"9223372036854775807"


def test_type_errors_are_raised_before_any_call(sdk, server, keys):
    before = op_count(server)
    for call in (
        lambda: sdk.get(1),
        lambda: sdk.set(None, b"v"),
        lambda: sdk.set(keys("k"), object()),  # the codec cannot encode it
        lambda: sdk.delete(1.5),
        lambda: sdk.exists(["k"]),
        lambda: sdk.expire(2, 10),
        lambda: sdk.ttl(b"k".decode),
        lambda: sdk.incr(3),
        lambda: sdk.incr(keys("k"), 1.5),
        lambda: sdk.incr(keys("k"), True),
        lambda: sdk.set(keys("k"), b"v", ttl_ms="100"),
        lambda: sdk.set(keys("k"), b"v", min_replicas="1"),
        lambda: sdk.mget([1]),
        lambda: sdk.mget(b"abc"),  # bytes iterate as ints
        lambda: sdk.mget("abc"),  # so would a str
        lambda: sdk.mset({1: b"A"}),
        lambda: sdk.mset([(keys("k"), object())]),
        lambda: sdk.mdelete([None]),
    ):
        with pytest.raises(TypeError, match=r"must be|cannot be encoded"):
            call()
    assert op_count(server) == before
    assert sdk.get(keys("k")) is None


def test_str_keys_are_utf8_bytes(sdk, keys):
    name = keys("naïve").decode()
    assert sdk.set(name, b"v") is True
    assert sdk.get(name.encode()) == b"v"
    assert sdk.mget([name, name.encode()]) == [b"v", b"v"]
    assert sdk.owner_of(name) == sdk.owner_of(name.encode())


def test_unavailable_when_nothing_listens(kind):
    c = open_client(kind, f"127.0.0.1:{free_port()}")
    try:
        started = time.monotonic()
        with pytest.raises(slotcache.Unavailable) as info:
            c.get(b"k")
        assert info.value.code == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < 4  # fails fast rather than waiting out the deadline
        with pytest.raises(slotcache.Unavailable):
            c.set(b"k", b"v")
    finally:
        c.close()


def test_out_of_memory_under_noeviction(servers, connect):
    server = servers("--maxmemory", "1mb", "--maxmemory-policy", "noeviction")
    c = connect(server.address)
    value = b"v" * 8192
    written = []
    with pytest.raises(slotcache.OutOfMemory) as info:
        for i in range(1000):
            c.set(b"fill-%d" % i, value)
            written.append(b"fill-%d" % i)
    assert "maxmemory" in info.value.message
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(written) > 64
    with pytest.raises(slotcache.OutOfMemory):
        c.mset({b"m1": value, b"m2": value})
    # Reads and deletes still work, and deleting makes room.
    assert c.get(written[0]) == value
    assert c.mget([written[1], b"m1"]) == [value, None]
    assert c.mdelete(written[:3]) == 3
    assert c.set(b"after", value) is True
    assert c.get(b"after") == value


def test_message_over_the_grpc_limit_is_not_reported_as_out_of_memory(servers, connect):
    server = servers("--max-value-bytes", "1m")
    c = connect(server.address)
    # 80 values of 1 MiB: each is allowed, but the request exceeds the 64 MiB message limit.
    items = {b"big-%d" % i: b"x" * (1024 * 1024) for i in range(80)}
    with pytest.raises(slotcache.ResourceExhausted) as info:
        c.mset(items)
    assert not isinstance(info.value, slotcache.OutOfMemory)
    assert c.get(b"big-0") is None


# ---- timeouts ----------------------------------------------------------------------------


def test_timeout_against_a_stopped_server(servers, connect):
    server = servers()
    c = connect(server.address, timeout=0.3)
    assert c.set(b"k", b"v", timeout=10)
    server.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(slotcache.Timeout) as info:
            c.get(b"k")  # the client's default timeout
        assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 3
        started = time.monotonic()
        with pytest.raises(slotcache.Timeout):
            c.get(b"k", timeout=0.05)  # a per-call timeout
        assert time.monotonic() - started < 3

        # A longer per-call timeout outlasts the default: the server resumes in time.
        resume = threading.Timer(0.6, server.send_signal, (signal.SIGCONT,))
        resume.start()
        try:
            assert c.get(b"k", timeout=10) == b"v"
        finally:
            resume.cancel()
    finally:
        server.send_signal(signal.SIGCONT)
    assert c.get(b"k", timeout=10) == b"v"


def test_timeout_must_be_positive(kind):
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="timeout"):
            open_client(kind, "127.0.0.1:1", timeout=bad)


def test_per_call_timeout_must_be_positive(sdk, keys):
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="timeout"):
            sdk.get(keys("k"), timeout=bad)


def test_no_timeout_at_all(connect, server, keys):
    c = connect(server.address, timeout=None)
    assert c.set(keys("k"), b"v")
    assert c.get(keys("k")) == b"v"


# ---- lifecycle ---------------------------------------------------------------------------


def test_client_context_manager_closes_the_channel(server, keys):
    with slotcache.Client(server.address) as c:
        assert c.set(keys("k"), b"v")
    with pytest.raises(ValueError, match="closed"):
        c.get(keys("k"))


async def test_async_client_context_manager_closes_the_channel(server, keys):
    async with slotcache.AsyncClient(server.address) as c:
        assert await c.set(keys("k"), b"v")
    with pytest.raises(ValueError, match="closed"):
        await c.get(keys("k"))


def test_client_close_fails_in_flight_calls_with_cancelled(servers):
    server = servers()
    c = slotcache.Client(server.address)
    try:
        c.set(b"k", b"v")
        server.send_signal(signal.SIGSTOP)
        outcome: dict[str, object] = {}

        def call() -> None:
            try:
                outcome["value"] = c.get(b"k", timeout=10)
            except BaseException as exc:
                outcome["error"] = exc

        worker = threading.Thread(target=call)
        worker.start()
        time.sleep(0.2)
        c.close()
        worker.join(5)
        assert isinstance(outcome.get("error"), slotcache.Cancelled), outcome
    finally:
        server.send_signal(signal.SIGCONT)
        c.close()


async def test_async_client_close_fails_in_flight_calls_with_cancelled(servers):
    server = servers()
    c = slotcache.AsyncClient(server.address)
    try:
        await c.set(b"k", b"v")
        server.send_signal(signal.SIGSTOP)
        call = asyncio.create_task(c.get(b"k", timeout=10))
        await asyncio.sleep(0.2)
        await c.close()
        # A failed call, as with Client, not a cancellation of the caller's task.
        with pytest.raises(slotcache.Cancelled):
            await asyncio.wait_for(call, 5)
    finally:
        server.send_signal(signal.SIGCONT)
        await c.close()


async def test_async_cancelling_the_caller_still_cancels(servers):
    server = servers()
    async with slotcache.AsyncClient(server.address) as c:
        await c.set(b"k", b"v")
        server.send_signal(signal.SIGSTOP)
        try:
            call = asyncio.create_task(c.get(b"k", timeout=10))
            await asyncio.sleep(0.2)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await c.get(b"k", timeout=10)
        finally:
            server.send_signal(signal.SIGCONT)
        assert await c.get(b"k") == b"v"


async def test_async_client_runs_calls_concurrently(aclient, keys):
    ks = [keys(f"k{i}") for i in range(200)]
    applied = await asyncio.gather(*(aclient.set(k, k[::-1]) for k in ks))
    assert applied == [True] * 200
    values = await asyncio.gather(*(aclient.get(k) for k in ks))
    assert values == [k[::-1] for k in ks]
    counts = await asyncio.gather(*(aclient.incr(keys("n")) for _ in range(100)))
    assert sorted(counts) == list(range(1, 101))
    assert await aclient.get(keys("n")) == b"100"


# ---- auto-pipelining ---------------------------------------------------------------------


async def test_async_concurrent_calls_coalesce_into_a_few_messages(aclient, keys):
    ks = [keys(f"c{i}") for i in range(100)]
    await aclient.set(keys("warm"), b"x")  # load the map and open the stream
    messages, ops = aclient.stats.pipeline_messages, aclient.stats.pipeline_ops
    assert await asyncio.gather(*(aclient.set(k, k) for k in ks)) == [True] * 100
    assert await asyncio.gather(*(aclient.get(k) for k in ks)) == ks
    assert aclient.stats.pipeline_ops - ops == 200
    # 100 calls made in one turn of the loop leave in a few messages: the first two are
    # cut early (32 operations each) so the node starts while the rest is queued, and
    # the rest leaves as one when a reply frees a message slot.
    assert aclient.stats.pipeline_messages - messages <= 6
    assert aclient.stats.ops_per_message >= 25
    assert aclient.stats.unary_calls == 1  # only the Topology call that loaded the map


def test_blocking_client_shared_by_threads_batches_their_calls(server, keys):
    with slotcache.Client(server.address) as c:
        c.set(keys("warm"), b"x")
        messages, ops = c.stats.pipeline_messages, c.stats.pipeline_ops
        errors: list[BaseException] = []

        def work(t: int) -> None:
            try:
                for i in range(100):
                    k = keys(f"t{t}-{i}")
                    assert c.set(k, k) is True
                    assert c.get(k) == k
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        sent = c.stats.pipeline_ops - ops
        assert sent == 16 * 200
        # While one message is served, the other threads' calls pile up for the next.
        assert sent / (c.stats.pipeline_messages - messages) > 2


def execute(sdk, p, **kwargs):
    """``p.execute(...)`` for either client (a driven AsyncClient's pipeline is a coroutine)."""
    outcome = p.execute(**kwargs)
    return sdk._call(outcome) if asyncio.iscoroutine(outcome) else outcome


def test_explicit_pipeline_returns_results_in_order_with_per_op_errors(sdk, kind, keys):
    sdk.set(keys("text"), b"not a number")
    messages = sdk.stats.pipeline_messages
    p = sdk.pipeline()
    p.set(keys("a"), b"1").get(keys("a")).incr(keys("a"), 5).incr(keys("text"))
    p.mset({keys("b"): "two", keys("c"): 3}).mget([keys("c"), keys("b"), keys("none")])
    p.delete(keys("a")).exists(keys("a")).ttl(keys("b"))
    assert len(p) == 9
    results = execute(sdk, p, raise_on_error=False)
    assert sdk.stats.pipeline_messages == messages + 1  # nine operations, one message
    assert results[:3] == [True, b"1", 6]
    assert isinstance(results[3], slotcache.FailedPrecondition)
    assert results[4:] == [None, [3, "two", None], True, False, -1]
    assert p.results == results
    with pytest.raises(ValueError, match="executed already"):
        p.get(keys("a"))

    p = sdk.pipeline()
    p.incr(keys("text")).set(keys("after"), b"ran")
    with pytest.raises(slotcache.FailedPrecondition):
        execute(sdk, p)  # raises the first failure ...
    assert sdk.get(keys("after")) == b"ran"  # ... after every operation ran


def test_explicit_pipeline_as_a_context_manager(server, keys):
    with slotcache.Client(server.address) as c:
        with c.pipeline() as p:
            for i in range(50):
                p.set(keys(f"p{i}"), i)
        assert p.results == [True] * 50
        with c.pipeline() as p:
            for i in range(50):
                p.get(keys(f"p{i}"))
        assert p.results == list(range(50))
        with pytest.raises(RuntimeError), c.pipeline() as p:
            p.set(keys("never"), b"v")
            raise RuntimeError("leaving the block with an error sends nothing")
        assert c.get(keys("never")) is None


async def test_async_explicit_pipeline_as_a_context_manager(aclient, keys):
    async with aclient.pipeline() as p:
        p.set(keys("x"), {"n": 1}).get(keys("x")).incr(keys("n"))
    assert p.results == [True, {"n": 1}, 1]
    # A large batch leaves whole: auto-pipelining's early cut does not split it.
    messages = aclient.stats.pipeline_messages
    async with aclient.pipeline() as p:
        for i in range(200):
            p.set(keys(f"b{i}"), i)
    assert p.results == [True] * 200
    assert aclient.stats.pipeline_messages == messages + 1


# ---- values ------------------------------------------------------------------------------


def test_python_objects_round_trip_and_bytes_stay_bytes(sdk, server, keys):
    objects = {
        keys("str"): "héllo",
        keys("int"): 2**40,
        keys("float"): 1.5,
        keys("list"): [1, "two", None, True],
        keys("dict"): {"nested": {"a": [1, 2]}, "n": None},
        keys("bytes"): b"\xc1 starts with the marker",
    }
    for key, value in objects.items():
        assert sdk.set(key, value)
        assert sdk.get(key) == value
    assert sdk.mget(list(objects)) == list(objects.values())
    # A bytes-only client (or any other language) sees raw bytes exactly as written ...
    with slotcache.Client(server.address, codec=None) as raw:
        assert raw.get(keys("bytes")) == b"\xc1\x00\xc1 starts with the marker"
        assert raw.set(keys("plain"), b"\xc1\x01 opaque") is True
        assert raw.get(keys("plain")) == b"\xc1\x01 opaque"
        with pytest.raises(TypeError, match="codec=None"):
            raw.set(keys("x"), "text")
    assert sdk.set(keys("raw"), b"plain bytes")
    with slotcache.Client(server.address, codec=None) as raw:
        assert raw.get(keys("raw")) == b"plain bytes"


def test_a_pluggable_codec(connect, server, keys):
    c = connect(server.address, codec=slotcache.JsonCodec())
    assert c.set(keys("j"), {"a": [1, 2]})
    assert c.get(keys("j")) == {"a": [1, 2]}
    with slotcache.Client(server.address, codec=None) as raw:
        assert raw.get(keys("j")) == b'\xc1\x01{"a":[1,2]}'


def test_encrypted_values_through_the_server(connect, server, keys):
    ring = slotcache.Keyring({"2025-01": slotcache.Keyring.generate_key()})
    c = connect(server.address, keyring=ring)
    assert c.set(keys("secret"), {"card": "4111 1111"})
    assert c.get(keys("secret")) == {"card": "4111 1111"}
    assert c.mget([keys("secret"), keys("none")]) == [{"card": "4111 1111"}, None]
    with slotcache.Client(server.address, codec=None) as raw:
        stored = raw.get(keys("secret"))
        assert b"4111" not in stored and b"2025-01" in stored
        # Tampering, and moving a ciphertext to another key, are detected.
        raw.set(keys("tampered"), stored[:-1] + bytes([stored[-1] ^ 1]))
        raw.set(keys("copied"), stored)
        raw.set(keys("plain"), b"not encrypted")
    for name in ("tampered", "copied", "plain"):
        with pytest.raises(slotcache.DecryptionError):
            c.get(keys(name))
    # Rotation: a client with the new primary key reads old values and writes new ones.
    rotated = ring.rotated("2025-07", slotcache.Keyring.generate_key())
    r = connect(server.address, keyring=rotated)
    assert r.get(keys("secret")) == {"card": "4111 1111"}
    assert r.set(keys("new"), "sealed with 2025-07")
    with pytest.raises(slotcache.DecryptionError, match="2025-07"):
        c.get(keys("new"))  # the old keyring does not hold the new key


# ---- get_or_set --------------------------------------------------------------------------


async def test_async_get_or_set_runs_the_loader_once_for_a_hundred_callers(aclient, keys):
    calls = 0

    async def loader() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        return {"answer": 42}

    results = await asyncio.gather(
        *(aclient.get_or_set(keys("k"), loader, LONG_TTL_MS) for _ in range(100))
    )
    assert results == [{"answer": 42}] * 100
    assert calls == 1
    assert aclient.stats.loader_calls == 1
    assert await aclient.get(keys("k")) == {"answer": 42}
    assert LONG_TTL_MS - 5000 < await aclient.ttl(keys("k")) <= LONG_TTL_MS
    assert await aclient.get_or_set(keys("k"), loader, LONG_TTL_MS) == {"answer": 42}
    assert calls == 1  # a hit runs no loader


def test_blocking_get_or_set_runs_the_loader_once_for_a_hundred_threads(server, keys):
    calls = 0
    lock = threading.Lock()

    def loader() -> str:
        nonlocal calls
        with lock:
            calls += 1
        time.sleep(0.3)
        return "computed"

    with slotcache.Client(server.address) as c:
        barrier = threading.Barrier(100)
        results: list[object] = []

        def call() -> None:
            barrier.wait(10)
            results.append(c.get_or_set(keys("k"), loader, LONG_TTL_MS, ttl_jitter=0.1))

        threads = [threading.Thread(target=call) for _ in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results == ["computed"] * 100
        assert calls == 1
        assert LONG_TTL_MS * 0.9 - 5000 < c.ttl(keys("k")) <= LONG_TTL_MS


def test_get_or_set_refreshes_early_as_expiry_nears(sdk, keys):
    loads = []

    def loader() -> int:
        loads.append(1)
        time.sleep(0.05)
        return len(loads)

    # A huge beta makes every read "close to expiry": each one recomputes, early.
    assert sdk.get_or_set(keys("x"), loader, 60_000, beta=1e9) == 1
    assert sdk.get_or_set(keys("x"), loader, 60_000, beta=1e9) == 2
    assert sdk.stats.early_refreshes == 1
    assert sdk.get(keys("x")) == 2  # a plain get reads a get_or_set entry
    # With beta=0 (the default) an entry is used until it expires.
    assert sdk.get_or_set(keys("y"), loader, 60_000) == 3
    assert sdk.get_or_set(keys("y"), loader, 60_000) == 3


# ---- replication options on a standalone server --------------------------------------------


def test_min_replicas_on_a_node_without_replicas_is_refused_and_not_applied(sdk, keys):
    sdk.set(keys("k"), b"before")
    for call in (
        lambda: sdk.set(keys("k"), b"after", min_replicas=1),
        lambda: sdk.delete(keys("k"), min_replicas=1),
        lambda: sdk.incr(keys("n"), min_replicas=1),
        lambda: sdk.mset({keys("k"): b"after", keys("m"): b"x"}, min_replicas=1),
        lambda: sdk.expire(keys("k"), 1000, min_replicas=1),
    ):
        with pytest.raises(slotcache.NotEnoughReplicas) as info:
            call()
        assert isinstance(info.value, slotcache.FailedPrecondition)
        assert info.value.reason == "NOT_ENOUGH_REPLICAS"
        assert info.value.metadata["required"] == "1"
    assert sdk.get(keys("k")) == b"before"  # nothing was applied
    assert sdk.get(keys("n")) is None and sdk.get(keys("m")) is None
    assert sdk.ttl(keys("k")) == -1
    assert sdk.stats.retries == 0
    assert sdk.set(keys("k"), b"zero", min_replicas=0) is True  # zero replicas: plain write
    p = sdk.pipeline()
    p.set(keys("p"), b"v", min_replicas=1).get(keys("k"))
    refused, value = execute(sdk, p, raise_on_error=False)
    assert isinstance(refused, slotcache.NotEnoughReplicas) and value == b"zero"


def test_replica_reads_on_a_node_without_replicas_are_served_by_it(connect, server, keys):
    c = connect(server.address, read_from_replicas=True)
    c.set(keys("k"), b"v")
    assert c.get(keys("k")) == b"v"
    assert c.get(keys("k"), replica_ok=False) == b"v"
    assert c.mget([keys("k")]) == [b"v"]
    assert c.stats.replica_reads == 0 and c.stats.replica_lag_ms is None


# ---- failures on the stream ----------------------------------------------------------------


def test_ops_in_flight_when_the_node_dies_are_resent_only_if_idempotent(servers, kind):
    server = servers()
    c = open_client(kind, server.address, timeout=30)
    try:
        assert c.incr(b"counter") == 1
        c.set(b"k", b"v")
        server.send_signal(signal.SIGSTOP)  # the ops below reach the node and wait there
        outcome: dict[str, object] = {}

        def run_all() -> None:
            if kind == "sync":
                with ThreadPoolExecutor(20) as pool:
                    futures = [pool.submit(c.incr, b"counter") for _ in range(10)]
                    futures += [pool.submit(c.get, b"k") for _ in range(10)]
                    results = []
                    for f in futures:
                        try:
                            results.append(f.result())
                        except BaseException as exc:
                            results.append(exc)
            else:

                async def both():
                    calls = [c.client.incr(b"counter") for _ in range(10)]
                    calls += [c.client.get(b"k") for _ in range(10)]
                    return await asyncio.gather(*calls, return_exceptions=True)

                results = c._call(both())
            outcome["results"] = results

        worker = threading.Thread(target=run_all)
        worker.start()
        time.sleep(0.5)
        server.kill()  # the stream breaks with every operation sent
        server.start()
        worker.join(40)
        results = outcome["results"]
        incrs, gets = results[:10], results[10:]
        # Increments that were sent may have run: raised, never resent.
        raised = [r for r in incrs if isinstance(r, BaseException)]
        assert raised, incrs
        for error in raised:
            assert isinstance(error, slotcache.Unavailable), incrs
            assert not isinstance(error, slotcache.NotSent)
            assert "may or may not have been applied" in error.message
        # Increments still queued behind the message in flight never left this client
        # (a blocking client's threads may queue some): resent, each ran once.
        done = sorted(r for r in incrs if not isinstance(r, BaseException))
        assert done == list(range(1, len(done) + 1))
        if kind == "async":
            assert len(raised) == 10  # all twenty operations left in one message
        # The reads were resent to the restarted (empty) node.
        assert gets == [None] * 10
        # Nothing but the resent increments reached the new process.
        assert c.get(b"counter") == (str(len(done)).encode() if done else None)
        assert c.stats.stream_failures >= 1
    finally:
        server.send_signal(signal.SIGCONT)
        c.close()


def test_close_ends_streams_and_threads(server, keys):
    before = {t.name for t in threading.enumerate()}
    c = slotcache.Client(server.address)
    c.set(keys("k"), b"v")
    assert any(t.name.startswith("slotcache-pipeline") for t in threading.enumerate())
    c.close()
    assert eventually(
        lambda: (
            not any(
                t.name.startswith("slotcache-") and t.name not in before
                for t in threading.enumerate()
            )
        )
    )


async def test_async_close_leaves_no_task_behind(server, keys):
    c = slotcache.AsyncClient(server.address)
    await c.set(keys("k"), b"v")
    before = asyncio.all_tasks()
    await c.close()
    await asyncio.sleep(0)
    assert asyncio.all_tasks() <= before
    leftover = [t for t in asyncio.all_tasks() if "_read" in repr(t) or "_write" in repr(t)]
    assert leftover == []
