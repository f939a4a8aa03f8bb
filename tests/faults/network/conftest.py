"""Fixtures for the network fault tests: a lab of namespaces, and servers inside it.

The lab is created before the servers and removed after them, so servers
stop gracefully first; the lab then removes whatever is left, pass or fail.
Without root, ip, iptables or tc the tests are skipped with the reason
(CI installs the tools, runs as root and sets NETFAULTS_REQUIRED=1, so
there a missing tool fails instead).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import FastStopFactory
from tests.support.netlab.lab import NetLab, unavailable
from tests.support.processes import ServerFactory

REQUIRED_ENV = "NETFAULTS_REQUIRED"


@pytest.fixture
def lab() -> Iterator[NetLab]:
    """An empty network lab, removed at the end."""
    reason = unavailable()
    if reason is not None:
        if os.environ.get(REQUIRED_ENV):
            pytest.fail(f"{reason}, and {REQUIRED_ENV} is set", pytrace=False)
        pytest.skip(reason)
    net = NetLab.create()
    try:
        yield net
    finally:
        net.close()


@pytest.fixture
def factory(lab: NetLab, tmp_path: Path) -> Iterator[ServerFactory]:
    """The fault tier's factory, set up after (so torn down before) the lab."""
    servers = FastStopFactory(tmp_path / "servers")
    try:
        yield servers
    finally:
        servers.close()
