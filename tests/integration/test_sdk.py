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

import grpc
import pytest

import slotcache
from slotcache.ctl.launcher import free_port
from slotcache.v1 import admin_pb2, admin_pb2_grpc

LONG_TTL_MS = 600_000
SHORT_TTL_MS = 150


def eventually(predicate, timeout: float = 5.0, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class AsyncDriver:
    """An AsyncClient on a private event loop thread, with blocking methods like Client's."""

    def __init__(self, address: str, **kwargs) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def make() -> slotcache.AsyncClient:
            return slotcache.AsyncClient(address, **kwargs)

        self.client = self._call(make())

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def __getattr__(self, name):
        method = getattr(self.client, name)
        return lambda *args, **kwargs: self._call(method(*args, **kwargs))

    def close(self) -> None:
        try:
            self._call(self.client.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()


def connect(kind: str, address: str, **kwargs):
    return slotcache.Client(address, **kwargs) if kind == "sync" else AsyncDriver(address, **kwargs)


@pytest.fixture(params=["sync", "async"])
def kind(request) -> str:
    return request.param


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


@pytest.fixture
def make_client(kind) -> Iterator[object]:
    """``make_client(address, **kwargs)`` for special servers; closed at the end."""
    made = []

    def make(address: str, **kwargs):
        c = connect(kind, address, **kwargs)
        made.append(c)
        return c

    try:
        yield make
    finally:
        for c in made:
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
        lambda: sdk.get("str-key"),
        lambda: sdk.set("str-key", b"v"),
        lambda: sdk.set(keys("k"), "str-value"),
        lambda: sdk.delete("k"),
        lambda: sdk.exists("k"),
        lambda: sdk.expire("k", 10),
        lambda: sdk.ttl("k"),
        lambda: sdk.incr("k"),
        lambda: sdk.incr(keys("k"), 1.5),
        lambda: sdk.incr(keys("k"), True),
        lambda: sdk.set(keys("k"), b"v", ttl_ms="100"),
        lambda: sdk.mget(["a"]),
        lambda: sdk.mget(b"abc"),  # bytes iterate as ints
        lambda: sdk.mset({"a": b"A"}),
        lambda: sdk.mset([(keys("k"), 1)]),
        lambda: sdk.mdelete(["a"]),
    ):
        with pytest.raises(TypeError, match="must be"):
            call()
    assert op_count(server) == before
    assert sdk.get(keys("k")) is None


def test_unavailable_when_nothing_listens(kind):
    c = connect(kind, f"127.0.0.1:{free_port()}")
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


def test_out_of_memory_under_noeviction(start_server, make_client):
    server = start_server("--maxmemory", "1mb", "--maxmemory-policy", "noeviction")
    c = make_client(server.address)
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


def test_message_over_the_grpc_limit_is_not_reported_as_out_of_memory(start_server, make_client):
    server = start_server("--max-value-bytes", "1m")
    c = make_client(server.address)
    # 80 values of 1 MiB: each is allowed, but the request exceeds the 64 MiB message limit.
    items = {b"big-%d" % i: b"x" * (1024 * 1024) for i in range(80)}
    with pytest.raises(slotcache.ResourceExhausted) as info:
        c.mset(items)
    assert not isinstance(info.value, slotcache.OutOfMemory)
    assert c.get(b"big-0") is None


# ---- timeouts ----------------------------------------------------------------------------


def test_timeout_against_a_stopped_server(start_server, make_client):
    server = start_server()
    c = make_client(server.address, timeout=0.3)
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
            connect(kind, "127.0.0.1:1", timeout=bad)


def test_per_call_timeout_must_be_positive(sdk, keys):
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="timeout"):
            sdk.get(keys("k"), timeout=bad)


def test_no_timeout_at_all(make_client, server, keys):
    c = make_client(server.address, timeout=None)
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


def test_client_close_fails_in_flight_calls_with_cancelled(start_server):
    server = start_server()
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


async def test_async_client_close_fails_in_flight_calls_with_cancelled(start_server):
    server = start_server()
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


async def test_async_cancelling_the_caller_still_cancels(start_server):
    server = start_server()
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
