"""Fixtures shared by every tier."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import pytest

from slotcache.ctl.main import main as clusterctl
from tests.support.ctl import Ctl, Result

# Tier markers, the pure tiers' guard, server logs on failure, measured figures.
pytest_plugins = ["tests.support.plugin"]


@pytest.fixture
def keys(request: pytest.FixtureRequest) -> Callable[..., bytes]:
    """Make keys unique to this test, so tests that share a server never see each other's keys.

    ``keys("a")`` returns ``b"<test name>-<random>:a"``; the same name gives the same key
    within one test.
    """
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:48]
    prefix = f"{name}-{uuid.uuid4().hex[:8]}:".encode()

    def make(suffix: str | bytes = "") -> bytes:
        return prefix + (suffix.encode() if isinstance(suffix, str) else suffix)

    return make


@pytest.fixture
def ctl(capsys: pytest.CaptureFixture[str]) -> Ctl:
    """``ctl("nodes", addr)`` runs clusterctl in this process and returns its status and output.

    Shared by the unit tier (argument handling) and the integration tier (real clusters).
    """

    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = clusterctl(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run
