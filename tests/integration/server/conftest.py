"""Plain generated stubs on the shared standalone server, as any gRPC client would use them."""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator

import grpc
import pytest

from slotcache.ctl.launcher import ServerProcess
from slotcache.v1 import admin_pb2_grpc, cache_pb2, cache_pb2_grpc
from tests.support.nodes import CHANNEL_OPTIONS


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address, options=CHANNEL_OPTIONS) as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> cache_pb2_grpc.CacheStub:
    """The plain generated Cache stub, as any gRPC client would use it."""
    return cache_pb2_grpc.CacheStub(channel)


@pytest.fixture(scope="module")
def admin_stub(channel: grpc.Channel) -> admin_pb2_grpc.AdminStub:
    return admin_pb2_grpc.AdminStub(channel)


class PipelineStream:
    """One open Pipeline call on a plain stub: send a batch, read its reply, same stream."""

    def __init__(self, stub: cache_pb2_grpc.CacheStub, timeout: float) -> None:
        self._requests: queue.Queue[cache_pb2.PipelineRequest | None] = queue.Queue()
        self.call = stub.Pipeline(iter(self._requests.get, None), timeout=timeout)

    def send_only(self, *ops: cache_pb2.Operation) -> None:
        self._requests.put(cache_pb2.PipelineRequest(ops=ops))

    def receive(self) -> list[cache_pb2.OperationResult]:
        return list(next(self.call).results)

    def send(self, *ops: cache_pb2.Operation) -> list[cache_pb2.OperationResult]:
        self.send_only(*ops)
        return self.receive()

    def close(self) -> grpc.StatusCode:
        """Half-close, check no reply is left over, and return the call's status."""
        self._requests.put(None)
        leftover = list(self.call)
        assert leftover == [], f"replies after the last batch: {leftover}"
        return self.call.code()


@pytest.fixture
def open_pipeline() -> Iterator[Callable[..., PipelineStream]]:
    """``open_pipeline(stub)`` opens a Pipeline stream; any still open are cancelled at the end."""
    streams: list[PipelineStream] = []

    def open_(stub: cache_pb2_grpc.CacheStub, timeout: float = 30.0) -> PipelineStream:
        stream = PipelineStream(stub, timeout)
        streams.append(stream)
        return stream

    try:
        yield open_
    finally:
        for stream in streams:
            stream.call.cancel()
