"""A client that cannot reach any node says which address failed and what to check."""

from __future__ import annotations

import pytest

import slotcache
from slotcache._core import Routing
from slotcache.ctl.launcher import LOOPBACK, free_port
from slotcache.errors import CONNECT_HINT, Unavailable
from tests.support.processes import ServerFactory


def nothing_listens() -> str:
    return f"{LOOPBACK}:{free_port()}"


@pytest.mark.parametrize("routing", ["smart", "proxy"])
def test_client_names_the_address_and_the_hint(routing: Routing) -> None:
    address = nothing_listens()
    with (
        slotcache.Client(address, timeout=5, routing=routing) as cache,
        pytest.raises(Unavailable) as err,
    ):
        cache.set("k", b"v")
    assert str(err.value).startswith(f"cannot reach {address} (failed to connect")
    assert str(err.value).endswith(CONNECT_HINT)


async def test_async_client_names_every_seed_and_the_hint() -> None:
    seeds = [nothing_listens(), nothing_listens()]
    async with slotcache.AsyncClient(seeds, timeout=5) as cache:
        with pytest.raises(Unavailable) as err:
            await cache.get("k")
    assert f"cannot reach {seeds[0]}, {seeds[1]} (" in str(err.value)
    assert str(err.value).endswith(CONNECT_HINT)


def test_no_hint_once_a_node_has_answered(servers: ServerFactory) -> None:
    server = servers.start()
    with slotcache.Client(server.address, timeout=2) as cache:
        assert cache.set("k", b"v")
        server.stop()
        with pytest.raises(Unavailable) as err:
            cache.get("k")
    # The address was right and the node did run: the hint would mislead.
    assert CONNECT_HINT not in str(err.value)


@pytest.mark.parametrize("address", [f"{LOOPBACK}:99999", f"{LOOPBACK}:0"])
def test_a_port_out_of_range_is_refused_before_dialing(address: str) -> None:
    with pytest.raises(ValueError, match=r"port \d+ is outside 1\.\.65535"):
        slotcache.Client(address)
