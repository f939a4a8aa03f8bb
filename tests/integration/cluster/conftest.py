"""Plain generated stubs on the shared cluster, and the figures the cluster tests measure."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.nodes import Nodes
from tests.support.processes import Cluster

# Figures measured by the tests (latencies, detection times), printed at the end of the run.
MEASUREMENTS: list[str] = []


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
def nodes3(cluster3: Cluster) -> Iterator[Nodes]:
    """Plain generated stubs for each node of ``cluster3``, in creation order."""
    nodes = Nodes(cluster3.addresses)
    try:
        yield nodes
    finally:
        nodes.close()
