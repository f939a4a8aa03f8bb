"""Input limits on a live node: a breach is RESOURCE_EXHAUSTED naming the limit, and
the connection (and, for an operation over a limit, the Pipeline stream) goes on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing

import grpc
import pytest

import slotcache
from slotcache.ctl.launcher import ServerProcess
from slotcache.v1 import cache_pb2 as pb
from slotcache.v1 import cache_pb2_grpc
from tests.support.nodes import CHANNEL_OPTIONS, NodeStubs, expect_failure, wait_for
from tests.support.processes import ServerFactory
from tests.support.streams import Pipeline, Subscription

EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
MAX_KEYS = 5
MAX_OPS = 10
MAX_STREAMS = 4
MAX_SUBSCRIBERS = 2
KIB = 1024
MAX_MESSAGE = 1024 * KIB
LIMIT_FLAGS = (
    *("--max-message-bytes", f"{MAX_MESSAGE // KIB}kb", "--max-value-bytes", "512kb"),
    *("--max-pipeline-ops", str(MAX_OPS), "--max-keys-per-call", str(MAX_KEYS)),
    *("--max-streams-per-connection", str(MAX_STREAMS)),
    *("--tracking-max-subscribers", str(MAX_SUBSCRIBERS)),
)


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One standalone node with small limits, shared by the tests of this module."""
    factory = ServerFactory(tmp_path_factory.mktemp("limited"))
    try:
        yield factory.start(*LIMIT_FLAGS)
    finally:
        factory.close()


@pytest.fixture
def node(limited: ServerProcess) -> Iterator[NodeStubs]:
    with closing(NodeStubs.open(limited.address)) as stubs:
        yield stubs


def assert_limit(failure, limit: str, maximum: int, value: int) -> None:
    assert failure.code == EXHAUSTED, failure
    assert failure.reason == "LIMIT_EXCEEDED"
    assert failure.metadata == {"limit": limit, "max": str(maximum), "value": str(value)}
    assert f"the limit is {maximum} (raise it with the server flag --{limit})" in failure.message


def keys(prefix: str, n: int) -> list[bytes]:
    return [f"{prefix}{i}".encode() for i in range(n)]


@pytest.mark.parametrize(
    ("rpc", "request_for"),
    [
        ("MGet", lambda ks: pb.MGetRequest(keys=ks)),
        ("MDelete", lambda ks: pb.MDeleteRequest(keys=ks)),
        ("MSet", lambda ks: pb.MSetRequest(entries=[pb.SetRequest(key=k, value=k) for k in ks])),
    ],
)
def test_a_call_over_the_key_limit_is_refused_and_the_channel_goes_on(node, rpc, request_for):
    node.set(b"kept0", b"before")
    method = getattr(node.cache, rpc)
    failure = expect_failure(lambda: method(request_for(keys("kept", MAX_KEYS + 1)), timeout=5))
    assert_limit(failure, "max-keys-per-call", MAX_KEYS, MAX_KEYS + 1)
    assert f"{rpc} has {MAX_KEYS + 1} keys" in failure.message
    # Nothing ran, and the same channel serves the next call.
    assert node.get(b"kept0") == b"before"
    assert node.get(b"kept5") is None
    method(request_for(keys("kept", MAX_KEYS)), timeout=5)


def test_an_operation_over_the_key_limit_fails_alone_and_the_stream_goes_on(node):
    stream = Pipeline(node.cache)
    too_many = pb.MGetRequest(keys=keys("p", MAX_KEYS + 1))
    results = stream.send(
        pb.Operation(id=1, mget=too_many),
        pb.Operation(id=2, set=pb.SetRequest(key=b"p-set", value=b"v")),
    )
    assert [r.id for r in results] == [1, 2]
    assert results[0].error.code == EXHAUSTED.value[0]
    assert results[0].error.reason == "LIMIT_EXCEEDED"
    assert "--max-keys-per-call" in results[0].error.message
    assert results[1].set.applied
    again = stream.send(pb.Operation(id=3, get=pb.GetRequest(key=b"p-set")))
    assert again[0].get.value == b"v"
    stream.close()


def test_a_message_over_the_operation_limit_ends_only_its_stream(node):
    stream = Pipeline(node.cache)
    ops = [
        pb.Operation(id=i, set=pb.SetRequest(key=b"ops%d" % i, value=b"v"))
        for i in range(MAX_OPS + 1)
    ]
    failure = expect_failure(lambda: stream.send(*ops))
    assert_limit(failure, "max-pipeline-ops", MAX_OPS, MAX_OPS + 1)
    assert node.get(b"ops0") is None, "an operation of the refused message ran"
    # The connection is fine: a new stream on the same channel takes a message at the limit.
    again = Pipeline(node.cache)
    assert all(r.set.applied for r in again.send(*ops[:MAX_OPS]))
    again.close()


def test_a_message_over_the_size_limit_is_refused_by_grpc_and_the_channel_goes_on(node):
    value = b"x" * (400 * KIB)  # under the value limit; three of them exceed the message limit
    entries = [pb.SetRequest(key=b"big%d" % i, value=value) for i in range(3)]
    failure = expect_failure(lambda: node.cache.MSet(pb.MSetRequest(entries=entries), timeout=5))
    assert failure.code == EXHAUSTED
    assert f"larger than max ({pb.MSetRequest(entries=entries).ByteSize()} vs. {MAX_MESSAGE})" in (
        failure.message
    )
    assert node.get(b"big0") is None
    assert node.set(b"big0", value)


def test_the_sdk_raises_typed_errors_naming_the_flags(limited):
    with slotcache.Client(limited.address) as client:
        with pytest.raises(slotcache.LimitExceeded) as info:
            client.mget(keys("sdk", MAX_KEYS + 1))
        assert (info.value.limit, info.value.maximum) == ("max-keys-per-call", MAX_KEYS)
        with pytest.raises(slotcache.MessageTooLarge) as big:
            client.mset({b"sdk%d" % i: b"x" * (400 * KIB) for i in range(3)})
        assert "--max-message-bytes" in str(big.value)
        assert client.set(b"sdk-after", b"v") and client.get(b"sdk-after") == b"v"


def test_subscribe_streams_are_bounded_per_node(node):
    open_streams = [Subscription(node.cache, pb.SubscribeRequest()) for _ in range(MAX_SUBSCRIBERS)]
    try:
        failure = expect_failure(lambda: next(node.cache.Subscribe(pb.SubscribeRequest())))
        assert_limit(failure, "tracking-max-subscribers", MAX_SUBSCRIBERS, MAX_SUBSCRIBERS)
        open_streams.pop().cancel()

        def subscribed() -> Subscription | None:
            try:
                return Subscription(node.cache, pb.SubscribeRequest())
            except grpc.RpcError:
                return None

        open_streams.append(wait_for(subscribed, 5.0, "a free Subscribe slot"))
    finally:
        for stream in open_streams:
            stream.cancel()


def test_calls_beyond_the_streams_per_connection_wait_for_a_free_stream(limited):
    with grpc.insecure_channel(limited.address, options=CHANNEL_OPTIONS) as channel:
        stub = cache_pb2_grpc.CacheStub(channel)
        streams = [Pipeline(stub) for _ in range(MAX_STREAMS)]
        for stream in streams:
            stream.send(pb.Operation(id=1, get=pb.GetRequest(key=b"k")))
        # HTTP/2 makes the client queue the call: it neither runs nor fails while all are busy.
        waiting = stub.Get.future(pb.GetRequest(key=b"k"), timeout=10)
        with pytest.raises(grpc.FutureTimeoutError):
            waiting.result(timeout=0.3)
        streams.pop().close()
        assert waiting.result(timeout=5).found is False
        for stream in streams:
            stream.close()
