"""Clusters of real slotcache-server processes on 127.0.0.1 for the cluster tests."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.support.processes import Cluster, ServerFactory, log_sections


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        report.sections.extend(log_sections())
    return report


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three primaries with node_timeout 1000 ms, shared by the tests of a module.

    Tests that kill, stop or reshape nodes must use ``make_cluster`` instead.
    """
    factory = ServerFactory(tmp_path_factory.mktemp("cluster3"))
    try:
        yield Cluster.start(factory)
    finally:
        factory.close()


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[ServerFactory]:
    """A factory for a test's own servers; ``Cluster.start(make_cluster, ...)`` forms a cluster."""
    factory = ServerFactory(tmp_path / "servers")
    try:
        yield factory
    finally:
        factory.close()
