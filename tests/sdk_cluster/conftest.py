"""Fixtures for the SDK-against-a-cluster tests: the cluster suite's real-process clusters.

``cluster3`` (three primaries, shared by a module) and ``make_cluster`` (a
factory for a test's own cluster) come from tests/cluster/conftest.py, so
both suites start and tear down processes the same way. Server logs are
attached to the report of a failing test.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

import slotcache
from tests.cluster.conftest import (  # noqa: F401
    cluster3,
    make_cluster,
    pytest_runtest_makereport,
)


class AsyncDriver:
    """An AsyncClient on a private event loop thread, with blocking methods like Client's.

    Lets one test body check both clients; attributes that are not
    coroutines (``stats``, ``owner_of``) pass straight through.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def make() -> slotcache.AsyncClient:
            return slotcache.AsyncClient(*args, **kwargs)

        self.client = self._call(make())

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(60)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if not inspect.iscoroutinefunction(attr):
            return attr
        return lambda *args, **kwargs: self._call(attr(*args, **kwargs))

    def close(self) -> None:
        try:
            self._call(self.client.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def connect(kind: str) -> Iterator[Callable[..., Any]]:
    """``connect(addresses, **kwargs)``: a Client or a driven AsyncClient, closed at the end."""
    made: list[Any] = []

    def open_(*args: Any, **kwargs: Any) -> Any:
        c = slotcache.Client(*args, **kwargs) if kind == "sync" else AsyncDriver(*args, **kwargs)
        made.append(c)
        return c

    try:
        yield open_
    finally:
        for c in made:
            c.close()
