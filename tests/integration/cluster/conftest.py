"""Plain generated stubs on the shared three-primary cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.nodes import Nodes
from tests.support.processes import Cluster


@pytest.fixture(scope="module")
def nodes3(cluster3: Cluster) -> Iterator[Nodes]:
    """Plain generated stubs for each node of ``cluster3``, in creation order."""
    nodes = Nodes(cluster3.addresses)
    try:
        yield nodes
    finally:
        nodes.close()
