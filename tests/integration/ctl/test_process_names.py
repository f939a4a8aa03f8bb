"""Local servers are found by name: by people with ps and pgrep, and by ``clusterctl down``."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from slotcache.ctl import local
from slotcache.ctl.launcher import LOOPBACK, free_port, server_command, wait_serving
from tests.support.ctl import free_port_block, run_cli


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def up_args(root: Path, base: int, *extra: str) -> list[str]:
    where = ["--dir", str(root), "--base-port", str(base)]
    return ["up", *where, "--primaries", "1", "--json", *extra]


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="reads /proc")
def test_up_starts_processes_named_slotcache_server(cluster_dir: Path) -> None:
    base = free_port_block(2)
    started = run_cli(*up_args(cluster_dir, base))
    assert started.returncode == 0, started.stderr
    pids = {n["pid"] for n in json.loads(started.stdout)["nodes"]}

    for i, pid in enumerate(sorted(pids)):
        args = cmdline(pid)
        assert any(Path(a).name == "slotcache-server" for a in args), args
        assert "--port" in args and str(base + i) in args
        # top shows the command name, which for a script is the script's (cut to 15 bytes).
        assert Path(f"/proc/{pid}/comm").read_text().strip() == "slotcache-serve"
    if shutil.which("pgrep"):
        found = subprocess.run(
            ["pgrep", "-f", "slotcache-server"], capture_output=True, text=True, check=False
        ).stdout.split()
        assert pids <= {int(p) for p in found}


def test_down_stops_a_node_started_by_hand_with_a_relative_data_dir(cluster_dir: Path) -> None:
    base = free_port_block(1)
    started = run_cli(*up_args(cluster_dir, base, "--replicas", "0"))
    assert started.returncode == 0, started.stderr
    # As the README grows a cluster: from the folder above it, with a relative --data-dir.
    port = free_port()
    node_dir = cluster_dir / f"node-{port}"
    node_dir.mkdir()
    flags = ["--port", str(port), "--bus-port", str(free_port()), "--cluster-enabled", "yes"]
    with open(node_dir / "server.log", "wb") as log:
        by_hand = subprocess.Popen(
            [*server_command(), *flags, "--data-dir", f"{cluster_dir.name}/node-{port}"],
            cwd=cluster_dir.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        assert wait_serving(f"{LOOPBACK}:{port}", 20), (node_dir / "server.log").read_text()
        assert by_hand.pid in local.discover(cluster_dir).running

        down = run_cli("down", "--dir", str(cluster_dir), "--json")
        assert down.returncode == 0, down.stderr
        stopped = {s["address"]: s["outcome"] for s in json.loads(down.stdout)["stopped"]}
        assert stopped == {f"{LOOPBACK}:{base}": "stopped", f"{LOOPBACK}:{port}": "stopped"}
        assert by_hand.wait(10) == 0
    finally:
        if by_hand.poll() is None:
            by_hand.kill()
            by_hand.wait()
