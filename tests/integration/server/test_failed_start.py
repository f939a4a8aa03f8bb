"""A server that cannot listen exits 1 and leaves its data directory as it found it."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from slotcache.ctl.launcher import LOOPBACK, ServerProcess, free_port
from tests.support.processes import run_to_completion as start

NODE_FILE = "nodes.json"


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another program listens on for the duration of the test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_taken_client_port_leaves_no_directory_and_no_node_file(
    tmp_path: Path, taken_port: int
) -> None:
    data_dir = tmp_path / "fresh"
    result = start(data_dir, "--port", str(taken_port))
    assert result.returncode == 1, result.stderr
    assert f"cannot listen on {LOOPBACK}:{taken_port}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not data_dir.exists()


def test_a_taken_bus_port_leaves_no_node_file(tmp_path: Path, taken_port: int) -> None:
    data_dir = tmp_path / "node"
    data_dir.mkdir()
    (data_dir / "server.log").write_text("kept\n")
    cluster = ("--cluster-enabled", "yes", "--bus-port", str(taken_port))
    result = start(data_dir, "--port", str(free_port()), *cluster)
    assert result.returncode == 1, result.stderr
    assert f"cannot listen on bus address {LOOPBACK}:{taken_port}" in result.stderr
    assert sorted(p.name for p in data_dir.iterdir()) == ["server.log"]


def test_a_node_file_from_an_earlier_run_is_kept(tmp_path: Path, taken_port: int) -> None:
    data_dir = tmp_path / "node"
    cluster = ["--cluster-enabled", "yes", "--bus-port", str(free_port())]
    with ServerProcess(data_dir, extra_args=cluster):
        pass
    saved = json.loads((data_dir / NODE_FILE).read_text())

    result = start(data_dir, "--port", str(taken_port), *cluster)
    assert result.returncode == 1, result.stderr
    assert json.loads((data_dir / NODE_FILE).read_text()) == saved
