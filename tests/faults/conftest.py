"""Fixtures for the fault tests: real server processes, torn down even on failure.

Every test here kills, stops or reshapes nodes, so each forms its own
cluster through the ``factory`` fixture; a failed test's report carries the
tail of every live server's log.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import ServerFactory


class FastStopFactory(ServerFactory):
    """A ServerFactory that asks every server to stop at once before waiting for each.

    Stopping one after the other costs a graceful shutdown per node; the
    signals go out together so the waits overlap.
    """

    def close(self) -> None:
        for server in list(self._servers):
            try:
                server.send_signal(signal.SIGCONT)
                server.send_signal(signal.SIGTERM)
            except Exception:
                pass  # close() below stops (or kills) it and reports the error
        super().close()


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """A factory for this test's servers; every one is stopped at the end, pass or fail."""
    servers = FastStopFactory(tmp_path / "servers")
    try:
        yield servers
    finally:
        servers.close()
