"""Fixtures for the clusterctl tests: the CLI in-process, fresh nodes, and local cluster folders.

Every process a test starts is stopped at the end, even on failure: servers
from ServerFactory by its finalizer, and servers started by ``clusterctl up``
by running ``clusterctl down`` and then killing anything still running from
the folder.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from slotcache.ctl import local
from slotcache.ctl.launcher import ServerProcess
from slotcache.ctl.main import main
from tests.support.processes import ServerFactory, log_sections


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        report.sections.extend(log_sections())
    return report


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def ctl(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """``ctl("nodes", addr)`` runs clusterctl in this process and returns its status and output."""

    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[ServerFactory]:
    """A factory for this test's own servers, stopped when the test ends."""
    factory = ServerFactory(tmp_path / "servers")
    try:
        yield factory
    finally:
        factory.close()


def start_nodes(factory: ServerFactory, count: int, *extra_args: str) -> list[ServerProcess]:
    """``count`` fresh cluster-mode servers, booted in parallel (six take one boot, not six)."""
    nodes = [factory.create(*extra_args, cluster=True) for _ in range(count)]
    with ThreadPoolExecutor(max_workers=count) as pool:
        list(pool.map(lambda node: node.start(), nodes))
    return nodes


def run_cli(*argv: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """clusterctl as a separate process, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "slotcache.ctl.main", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def kill_everything_from(root: Path) -> None:
    """Last resort after a test: stop (and if need be SIGKILL) any server still running there."""
    local.stop(local.discover(root).running, timeout=1.0)


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder for ``clusterctl up``; whatever runs from it is brought down afterwards."""
    root = tmp_path / "cluster"
    try:
        yield root
    finally:
        run_cli("down", "--dir", str(root), "--stop-timeout", "5")
        kill_everything_from(root)
