"""Both SDK clients against real servers: ``kind`` runs a test once per client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

import slotcache
from slotcache.ctl.launcher import ServerProcess
from tests.support.sdk import open_client


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def connect(kind: str) -> Iterator[Callable[..., Any]]:
    """``connect(addresses, **kwargs)``: a Client or a driven AsyncClient, closed at the end."""
    made: list[Any] = []

    def open_(*args: Any, **kwargs: Any) -> Any:
        c = open_client(kind, *args, **kwargs)
        made.append(c)
        return c

    try:
        yield open_
    finally:
        for c in made:
            c.close()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[slotcache.Client]:
    """A Client on the shared standalone server, shared by the tests of a module."""
    with slotcache.Client(server.address) as c:
        yield c


@pytest.fixture
async def aclient(server: ServerProcess) -> AsyncIterator[slotcache.AsyncClient]:
    async with slotcache.AsyncClient(server.address) as c:
        yield c
