"""Fixtures of the Redis-protocol tests: a slotcache node with a RESP port, and redis-server."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from slotcache.ctl.launcher import LOOPBACK, free_port
from tests.support.processes import ServerFactory
from tests.support.resp import redis_tool, start_resp_node


@pytest.fixture(scope="module")
def resp_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The RESP port of one standalone slotcache node, shared by a module's tests."""
    factory = ServerFactory(tmp_path_factory.mktemp("resp"))
    try:
        yield start_resp_node(factory)
    finally:
        factory.close()


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A redis-server of the same machine, to compare replies with (skipped without one)."""
    server = redis_tool("redis-server")
    port = free_port()
    workdir: Path = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis(LOOPBACK, port, socket_timeout=1) as r:
                    r.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
