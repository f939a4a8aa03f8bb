"""The Cache and Admin servicers in isolation, through grpcio-testing (no network).

The servicers are ``async def`` (grpc.aio needs that) while grpc_testing calls
handlers synchronously, so :class:`Blocking` exposes each method as a plain
callable that runs the coroutine on a private event loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import grpc
import grpc_testing
import pytest
from google.rpc import error_details_pb2, status_pb2

from slotcache.v1 import admin_pb2, cache_pb2
from slotcache.v1 import cache_pb2 as pb
from slotcache_server.config import ServerConfig
from slotcache_server.keyspace import EvictionPolicy, Keyspace
from slotcache_server.node import Node
from slotcache_server.observability.calls import CallRecorder

CACHE = cache_pb2.DESCRIPTOR.services_by_name["Cache"]
ADMIN = admin_pb2.DESCRIPTOR.services_by_name["Admin"]
OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
START_MS = 1_700_000_000_000


class _Context:
    """grpc_testing's context, plus the ``abort_with_status`` and ``peer`` it lacks.

    grpc_testing's abort drops trailing metadata, so the full status is also
    recorded in ``statuses`` for the test to inspect.
    """

    def __init__(self, inner, statuses: list[grpc.Status]) -> None:
        self._inner = inner
        self._statuses = statuses

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def abort_with_status(self, status: grpc.Status) -> None:
        self._statuses.append(status)
        self._inner.abort(status.code, status.details)

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"


class LoopRunner:
    """A private event loop that runs one coroutine at a time, from any thread."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._lock = threading.Lock()

    def run(self, coro):
        with self._lock:
            return self._loop.run_until_complete(coro)

    def close(self) -> None:
        # grpc_testing may report a call finished (abort) before its thread left the loop.
        with self._lock:
            self._loop.close()


class Blocking:
    """An async servicer whose methods grpc_testing can call from its threads."""

    def __init__(self, servicer, runner: LoopRunner) -> None:
        self._servicer = servicer
        self._run = runner.run
        self.statuses: list[grpc.Status] = []

    def __getattr__(self, name):
        method = getattr(self._servicer, name)
        if name == "Pipeline":

            def stream(request_iterator, context):
                async def requests():
                    for request in request_iterator:
                        yield request

                replies = method(requests(), _Context(context, self.statuses))
                while True:
                    try:
                        yield self._run(replies.__anext__())
                    except StopAsyncIteration:
                        return

            return stream

        def unary(request, context):
            return self._run(method(request, _Context(context, self.statuses)))

        return unary


class Clock:
    def __init__(self) -> None:
        self.now = START_MS

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def runner():
    runner = LoopRunner()
    yield runner
    runner.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@dataclass
class Served:
    """A grpc_testing server around the servicers, and what a test inspects."""

    server: grpc_testing.Server
    counters: CallRecorder
    keyspace: Keyspace
    statuses: list[grpc.Status]  # every status sent with abort_with_status

    def __iter__(self):
        return iter((self.server, self.counters, self.keyspace))


def build(runner, config: ServerConfig, clock: Clock | None = None) -> Served:
    """A standalone node's servicers, wired by the node itself, without a network."""
    node = Node(config, clock_ms=clock or Clock())
    cache = Blocking(node.cache_service(), runner)
    admin = Blocking(node.admin_service(), runner)
    server = grpc_testing.server_from_dictionary(
        {CACHE: cache, ADMIN: admin}, grpc_testing.strict_real_time()
    )
    return Served(server, node.recorder, node.keyspace, cache.statuses)


@pytest.fixture
def served(runner, clock, tmp_path) -> Served:
    return build(
        runner, ServerConfig(data_dir=tmp_path, max_key_bytes=64, max_value_bytes=1024), clock
    )


def call(server, rpc: str, request, service=CACHE):
    """Invoke a unary RPC; return (reply, code, details, trailing metadata)."""
    method = service.methods_by_name[rpc]
    invocation = server.invoke_unary_unary(method, (), request, None)
    reply, trailing, code, details = invocation.termination()
    return reply, code, details, dict(trailing or ())


def ok(server, rpc: str, request):
    reply, code, details, _ = call(server, rpc, request)
    assert code == OK, f"{rpc}: {code} {details}"
    return reply


def fails(server, rpc: str, request, code: grpc.StatusCode, *fragments: str):
    _, got, details, trailing = call(server, rpc, request)
    assert got == code, f"{rpc}: {got} {details}"
    for fragment in fragments:
        assert fragment in details, details
    return details, trailing


def reason_of(status: grpc.Status) -> str:
    (details,) = [v for k, v in status.trailing_metadata if k == "grpc-status-details-bin"]
    info = error_details_pb2.ErrorInfo()
    assert status_pb2.Status.FromString(details).details[0].Unpack(info)
    assert info.domain == "slotcache.io"
    return info.reason


# ---- successes -------------------------------------------------------------------------


def test_set_get_delete_exists(served):
    server, _, keyspace = served
    assert not ok(server, "Get", pb.GetRequest(key=b"k")).found
    assert ok(server, "Set", pb.SetRequest(key=b"k", value=b"v")).applied
    assert keyspace.get(b"k") == b"v"
    reply = ok(server, "Get", pb.GetRequest(key=b"k"))
    assert (reply.found, reply.value) == (True, b"v")
    assert ok(server, "Exists", pb.ExistsRequest(key=b"k")).exists
    assert ok(server, "Delete", pb.DeleteRequest(key=b"k")).deleted
    assert not ok(server, "Delete", pb.DeleteRequest(key=b"k")).deleted
    assert not ok(server, "Exists", pb.ExistsRequest(key=b"k")).exists
    assert keyspace.key_count == 0


def test_set_conditions_and_keep_ttl(served, clock):
    server, _, keyspace = served
    absent, present = pb.SET_CONDITION_IF_ABSENT, pb.SET_CONDITION_IF_PRESENT
    assert not ok(server, "Set", pb.SetRequest(key=b"k", value=b"x", condition=present)).applied
    assert ok(server, "Set", pb.SetRequest(key=b"k", value=b"1", condition=absent)).applied
    assert not ok(server, "Set", pb.SetRequest(key=b"k", value=b"2", condition=absent)).applied
    assert keyspace.get(b"k") == b"1"
    ok(server, "Set", pb.SetRequest(key=b"k", value=b"3", ttl_ms=1000))
    assert ok(server, "Set", pb.SetRequest(key=b"k", value=b"4", keep_ttl=True)).applied
    assert keyspace.deadline(b"k") == START_MS + 1000
    assert keyspace.get(b"k") == b"4"


def test_ttl_and_expire_with_a_fake_clock(served, clock):
    server, _, _ = served
    assert not ok(server, "Ttl", pb.TtlRequest(key=b"k")).found
    ok(server, "Set", pb.SetRequest(key=b"k", value=b"v"))
    reply = ok(server, "Ttl", pb.TtlRequest(key=b"k"))
    assert (reply.found, reply.has_ttl) == (True, False)
    assert ok(server, "Expire", pb.ExpireRequest(key=b"k", ttl_ms=500)).applied
    clock.now += 200
    reply = ok(server, "Ttl", pb.TtlRequest(key=b"k"))
    assert (reply.found, reply.has_ttl, reply.ttl_ms) == (True, True, 300)
    assert ok(server, "Expire", pb.ExpireRequest(key=b"k", clear=True)).applied
    assert not ok(server, "Ttl", pb.TtlRequest(key=b"k")).has_ttl
    assert not ok(server, "Expire", pb.ExpireRequest(key=b"missing", ttl_ms=5)).applied
    ok(server, "Expire", pb.ExpireRequest(key=b"k", ttl_ms=100))
    clock.now += 100
    assert not ok(server, "Get", pb.GetRequest(key=b"k")).found


def test_incr(served, clock):
    server, _, keyspace = served
    assert ok(server, "Incr", pb.IncrRequest(key=b"n", delta=5)).value == 5
    assert ok(server, "Incr", pb.IncrRequest(key=b"n", delta=-7)).value == -2
    assert keyspace.get(b"n") == b"-2"
    ok(server, "Expire", pb.ExpireRequest(key=b"n", ttl_ms=1000))
    ok(server, "Incr", pb.IncrRequest(key=b"n", delta=1))
    assert keyspace.deadline(b"n") == START_MS + 1000


def test_multi_key(served):
    server, _, keyspace = served
    entries = [pb.SetRequest(key=b"a", value=b"A"), pb.SetRequest(key=b"b", value=b"B")]
    assert list(ok(server, "MSet", pb.MSetRequest(entries=entries)).applied) == [True, True]
    reply = ok(server, "MGet", pb.MGetRequest(keys=[b"b", b"x", b"a"]))
    assert [(r.found, r.value) for r in reply.results] == [
        (True, b"B"),
        (False, b""),
        (True, b"A"),
    ]
    assert ok(server, "MDelete", pb.MDeleteRequest(keys=[b"a", b"x", b"b"])).deleted == 2
    assert keyspace.key_count == 0


def test_pipeline(served):
    server, counters, _ = served
    rpc = server.invoke_stream_stream(CACHE.methods_by_name["Pipeline"], (), None)
    rpc.send_request(
        pb.PipelineRequest(
            ops=[
                pb.Operation(id=1, set=pb.SetRequest(key=b"k", value=b"v")),
                pb.Operation(id=2),
                pb.Operation(id=3, get=pb.GetRequest(key=b"k")),
            ]
        )
    )
    results = rpc.take_response().results
    assert [r.WhichOneof("result") for r in results] == ["set", "error", "get"]
    assert [r.id for r in results] == [1, 2, 3]
    assert results[1].error.code == 3
    assert results[2].get.value == b"v"
    rpc.send_request(pb.PipelineRequest(ops=[pb.Operation(id=4, get=pb.GetRequest(key=b""))]))
    (result,) = rpc.take_response().results
    assert result.error.code == 3
    rpc.requests_closed()
    _, code, _ = rpc.termination()
    assert code == OK
    assert counters.op_counts() == {
        "set.ok": 1,
        "get.ok": 1,
        "get.invalid_argument": 1,
        "unknown.invalid_argument": 1,
    }


# ---- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rpc", "request_"),
    [
        ("Get", pb.GetRequest()),
        ("Set", pb.SetRequest(value=b"v")),
        ("Delete", pb.DeleteRequest()),
        ("Exists", pb.ExistsRequest()),
        ("Expire", pb.ExpireRequest(ttl_ms=5)),
        ("Ttl", pb.TtlRequest()),
        ("Incr", pb.IncrRequest(delta=1)),
    ],
)
def test_empty_key(served, rpc, request_):
    server, counters, keyspace = served
    fails(server, rpc, request_, INVALID, "key must not be empty")
    assert keyspace.key_count == 0
    assert counters.op_counts() == {f"{rpc.lower()}.invalid_argument": 1}


@pytest.mark.parametrize(
    ("rpc", "request_", "fragments"),
    [
        ("Get", pb.GetRequest(key=b"k" * 65), ["key is 65 bytes", "limit is 64"]),
        ("Set", pb.SetRequest(key=b"k", value=b"v" * 1025), ["value is 1025 bytes", "1024"]),
        ("Set", pb.SetRequest(key=b"k", value=b"v", ttl_ms=-1), ["ttl_ms", "negative"]),
        ("Set", pb.SetRequest(key=b"k", value=b"v", ttl_ms=1, keep_ttl=True), ["keep_ttl"]),
        ("Set", pb.SetRequest(key=b"k", value=b"v", condition=5), ["condition 5"]),
        ("Set", pb.SetRequest(key=b"k", value=b"v", ttl_ms=2**62), ["ttl_ms", "at most"]),
        ("Expire", pb.ExpireRequest(key=b"k"), ["ttl_ms must be > 0"]),
        ("Expire", pb.ExpireRequest(key=b"k", ttl_ms=-3), ["negative"]),
        ("Expire", pb.ExpireRequest(key=b"k", ttl_ms=3, clear=True), ["clear"]),
        ("MGet", pb.MGetRequest(keys=[b"a", b""]), ["keys[1] must not be empty"]),
        ("MDelete", pb.MDeleteRequest(keys=[b"k", b"x" * 65]), ["keys[1] is 65 bytes"]),
        (
            "MSet",
            pb.MSetRequest(entries=[pb.SetRequest(key=b"a"), pb.SetRequest(key=b"b", ttl_ms=-1)]),
            ["entries[1].ttl_ms"],
        ),
    ],
)
def test_invalid_argument_changes_nothing(served, rpc, request_, fragments):
    server, _, keyspace = served
    ok(server, "Set", pb.SetRequest(key=b"k", value=b"old"))
    used = keyspace.used_memory
    fails(server, rpc, request_, INVALID, *fragments)
    assert keyspace.get(b"k") == b"old"
    assert keyspace.deadline(b"k") == 0
    assert keyspace.key_count == 1
    assert keyspace.used_memory == used


def test_incr_failed_precondition_carries_a_reason(served):
    server, counters, keyspace = served
    ok(server, "Set", pb.SetRequest(key=b"text", value=b"abc"))
    fails(server, "Incr", pb.IncrRequest(key=b"text", delta=1), PRECONDITION, "not an integer")
    ok(server, "Set", pb.SetRequest(key=b"max", value=str(2**63 - 1).encode()))
    fails(server, "Incr", pb.IncrRequest(key=b"max", delta=1), PRECONDITION, "overflow")
    assert [s.code for s in served.statuses] == [PRECONDITION, PRECONDITION]
    assert [reason_of(s) for s in served.statuses] == ["NOT_INTEGER", "INTEGER_OVERFLOW"]
    assert keyspace.get(b"text") == b"abc"
    assert keyspace.get(b"max") == str(2**63 - 1).encode()
    assert counters.op_counts()["incr.failed_precondition"] == 2


def test_resource_exhausted_under_noeviction(runner, tmp_path):
    config = ServerConfig(
        data_dir=tmp_path,
        maxmemory=4096,
        maxmemory_policy=EvictionPolicy.NOEVICTION,
        max_key_bytes=64,
        max_value_bytes=1 << 20,
    )
    server, counters, keyspace = build(runner, config)
    ok(server, "Set", pb.SetRequest(key=b"a", value=b"x" * 1000))
    ok(server, "Set", pb.SetRequest(key=b"b", value=b"x" * 1000))
    used = keyspace.used_memory
    fails(server, "Set", pb.SetRequest(key=b"c", value=b"x" * 3000), EXHAUSTED, "maxmemory")
    entries = [pb.SetRequest(key=b"d", value=b"d"), pb.SetRequest(key=b"e", value=b"x" * 3000)]
    fails(server, "MSet", pb.MSetRequest(entries=entries), EXHAUSTED)
    assert keyspace.used_memory == used
    assert keyspace.get(b"c") is None and keyspace.get(b"d") is None
    assert ok(server, "Get", pb.GetRequest(key=b"a")).value == b"x" * 1000
    assert counters.op_counts()["set.resource_exhausted"] == 1
    assert counters.op_counts()["mset.resource_exhausted"] == 1


# ---- Admin.Info --------------------------------------------------------------------------------


def test_info_reports_node_counters(runner, tmp_path):
    node = Node(ServerConfig(maxmemory=1 << 20, data_dir=tmp_path))
    server = grpc_testing.server_from_dictionary(
        {
            CACHE: Blocking(node.cache_service(), runner),
            ADMIN: Blocking(node.admin_service(), runner),
        },
        grpc_testing.strict_real_time(),
    )

    def info():
        reply, code, details, _ = call(server, "Info", admin_pb2.InfoRequest(), ADMIN)
        assert code == OK, details
        return reply

    empty = info()
    assert empty.server["maxmemory_policy"] == "noeviction"
    assert empty.server["address"] == "127.0.0.1:7000"
    assert empty.stats["keys"] == 0
    assert empty.stats["memory.used"] == 0
    assert empty.stats["memory.max"] == 1 << 20

    ok(server, "Set", pb.SetRequest(key=b"k", value=b"v"))
    ok(server, "Set", pb.SetRequest(key=b"gone", value=b"v", ttl_ms=1))
    ok(server, "Get", pb.GetRequest(key=b"k"))
    ok(server, "Get", pb.GetRequest(key=b"missing"))
    time.sleep(0.005)
    ok(server, "Get", pb.GetRequest(key=b"gone"))  # expired: removed on access
    fails(server, "Get", pb.GetRequest(key=b""), INVALID)

    stats = info().stats
    assert stats["ops.set.ok"] == 2
    assert stats["ops.get.ok"] == 3
    assert stats["ops.get.invalid_argument"] == 1
    assert stats["hits"] == 1
    assert stats["misses"] == 2
    assert stats["expired.lazy"] == 1
    assert stats["keys"] == 1
    assert stats["keys.with_ttl"] == 0
    assert stats["memory.used"] > 0
