"""Clusters of real slotcache-server processes on 127.0.0.1 for the cluster tests."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from tests.cluster.helpers import Nodes
from tests.support.processes import Cluster, ServerFactory, log_sections

# Figures measured by the tests (latencies, detection times), printed at the end of the run.
MEASUREMENTS: list[str] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        report.sections.extend(log_sections())
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if MEASUREMENTS:
        terminalreporter.section("cluster measurements")
        for line in MEASUREMENTS:
            terminalreporter.write_line(line)


@pytest.fixture
def report_figure() -> Callable[[str], None]:
    """``report_figure("...")`` prints a measured figure now and in the run's summary."""

    def record(line: str) -> None:
        MEASUREMENTS.append(line)
        print(line)

    return record


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


@pytest.fixture(scope="module")
def nodes3(cluster3: Cluster) -> Iterator[Nodes]:
    """Plain generated stubs for each node of ``cluster3``, in creation order."""
    nodes = Nodes(cluster3.addresses)
    try:
        yield nodes
    finally:
        nodes.close()


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[ServerFactory]:
    """A factory for a test's own servers; ``Cluster.start(make_cluster, ...)`` forms a cluster."""
    factory = ServerFactory(tmp_path / "servers")
    try:
        yield factory
    finally:
        factory.close()
