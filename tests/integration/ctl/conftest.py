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

from tests.support.ctl import brought_down


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder for ``clusterctl up``; whatever runs from it is brought down afterwards."""
    with brought_down(tmp_path / "cluster") as root:
        yield root
