"""Real slotcache-server processes for the near-cache invalidation tests.

Every test talks to the servers through plain generated stubs, as a client
in any language would; :mod:`tests.support.streams` only adds a reader
thread and timeouts around the Subscribe stream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest

from slotcache.ctl.launcher import ServerProcess
from slotcache.v1 import cache_pb2 as pb
from slotcache.v1 import cache_pb2_grpc
from tests.support.nodes import NodeStubs
from tests.support.streams import Subscription


@pytest.fixture(scope="module")
def node(server: ServerProcess) -> Iterator[NodeStubs]:
    """Plain stubs for the shared server."""
    stubs = NodeStubs.open(server.address)
    try:
        yield stubs
    finally:
        stubs.close()


@pytest.fixture
def open_stubs() -> Iterator[Callable[[str], NodeStubs]]:
    """``open_stubs(address)``: stubs on a channel of their own (another client), closed later."""
    opened: list[NodeStubs] = []

    def open_(address: str) -> NodeStubs:
        stubs = NodeStubs.open(address)
        opened.append(stubs)
        return stubs

    try:
        yield open_
    finally:
        for stubs in opened:
            stubs.close()


@pytest.fixture
def subscribe() -> Iterator[Callable[..., Subscription]]:
    """``subscribe(stub, mode=..., slots=...)`` opens a Subscribe stream, cancelled at the end."""
    opened: list[Subscription] = []

    def open_(
        stub: cache_pb2_grpc.CacheStub,
        mode: int = pb.TRACKING_MODE_KEYS,
        slots: Sequence[tuple[int, int]] = (),
        read: bool = True,
    ) -> Subscription:
        request = pb.SubscribeRequest(
            mode=mode, slots=[pb.SlotRange(start=s, end=e) for s, e in slots]
        )
        sub = Subscription(stub, request, read=read)
        opened.append(sub)
        return sub

    try:
        yield open_
    finally:
        for sub in opened:
            sub.cancel()
