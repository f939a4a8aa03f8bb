"""Certificates for the TLS tests, made at run time; clusterctl's connection restored after each.

These tests bring their own certificates whatever the session runs with
(``SLOTCACHE_TEST_TLS``), so they check the same thing in both CI jobs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from slotcache.ctl.certs import LocalCerts, generate_local
from tests.support import security


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> LocalCerts:
    """A CA with a node and a client certificate, shared by a module's tests."""
    return generate_local(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def own_certs(tmp_path: Path) -> LocalCerts:
    """Certificates for one test, which may rotate them."""
    return generate_local(tmp_path / "certs")


@pytest.fixture(autouse=True)
def _clusterctl_as_the_session() -> Iterator[None]:
    """In-process clusterctl runs here switch its TLS; later tests connect as the session does."""
    yield
    security.restore_clusterctl()
