"""Real ``slotcache-server`` processes on 127.0.0.1 for the integration tests.

Every process is started through :class:`slotcache.ctl.launcher.ServerProcess`
and stopped in a finalizer, so a failing test never leaks one. When a test
fails, the logs of the servers that were running are attached to its report.
"""

from __future__ import annotations

import queue
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path

import grpc
import pytest

import slotcache
from slotcache.ctl.launcher import ServerProcess
from slotcache.v1 import admin_pb2_grpc, cache_pb2, cache_pb2_grpc
from tests.support.processes import ServerFactory, log_sections

# gRPC's 4 MiB receive default would refuse values the server accepts.
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
]
_LOG_TAIL_CHARS = 8000


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        report.sections.extend(log_sections())
    return report


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """A factory for servers with special flags, stopped when the test ends."""
    factory = ServerFactory(tmp_path / "servers")
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server with default settings, shared by the tests of a module."""
    factory = ServerFactory(tmp_path_factory.mktemp("server"))
    try:
        yield factory.start()
    finally:
        factory.close()


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


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[slotcache.Client]:
    with slotcache.Client(server.address) as c:
        yield c


@pytest.fixture
async def aclient(server: ServerProcess) -> AsyncIterator[slotcache.AsyncClient]:
    async with slotcache.AsyncClient(server.address) as c:
        yield c


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
