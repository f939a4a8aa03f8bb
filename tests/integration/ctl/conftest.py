"""Folders for ``clusterctl up``, and whatever runs from them brought down afterwards.

Every process a test starts is stopped at the end, even on failure: servers
from the ``servers`` factory by its finalizer, and servers started by
``clusterctl up`` by running ``clusterctl down`` and then killing anything
still running from the folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from slotcache.ctl import local
from tests.support.ctl import run_cli


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
