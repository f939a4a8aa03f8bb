"""Real ``slotcache-server`` processes on 127.0.0.1, for every area of the integration tier.

Every process is started through :class:`tests.support.processes.ServerFactory`
and stopped in a finalizer, so a failing test never leaks one (the logs of
the servers still running go into a failed test's report).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from slotcache.ctl.launcher import ServerProcess
from tests.support.processes import Cluster, ServerFactory


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[ServerFactory]:
    """A factory for this test's own servers (special flags, clusters), stopped at the end.

    ``servers("--flag")`` starts one; ``Cluster.start(servers, ...)`` forms a cluster.
    """
    factory = ServerFactory(tmp_path / "servers")
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One standalone server with default settings, shared by the tests of a module."""
    factory = ServerFactory(tmp_path_factory.mktemp("server"))
    try:
        yield factory.start()
    finally:
        factory.close()


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three primaries with node_timeout 1000 ms, shared by the tests of a module.

    Tests that kill, stop or reshape nodes must form their own with ``servers`` instead.
    """
    factory = ServerFactory(tmp_path_factory.mktemp("cluster3"))
    try:
        yield Cluster.start(factory)
    finally:
        factory.close()
