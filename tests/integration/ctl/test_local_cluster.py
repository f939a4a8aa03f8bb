"""clusterctl up and down with real background processes, as an operator runs them.

Each test's folder is brought down by the ``cluster_dir`` fixture whatever
happens, and anything still running from it is killed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slotcache.ctl import local, local_commands
from slotcache.ctl.cluster_ops import OperationError, fetch_state
from tests.support.ctl import Ctl, foreground_up, run_cli, run_python
from tests.support.ports import free_port_block

FAST = ("--node-timeout-ms", "1000", "--stop-timeout", "5")


def up(root: Path, base: int, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli("up", "--dir", str(root), "--base-port", str(base), *FAST, *extra)


def pid_alive(pid: int) -> bool:
    return local.alive(pid)


def test_up_then_down_leaves_nothing_running(cluster_dir: Path) -> None:
    # The defaults, as `make run` uses them: 3 primaries, each with 1 replica.
    base = free_port_block(6)
    started = up(cluster_dir, base, "--json")
    assert started.returncode == 0, started.stderr
    data = json.loads(started.stdout)
    addresses = [f"127.0.0.1:{base + i}" for i in range(6)]
    assert [n["address"] for n in data["nodes"]] == addresses
    assert [n["bus_address"] for n in data["nodes"]] == [
        f"127.0.0.1:{base + i + 10000}" for i in range(6)
    ]
    assert [n["role"] for n in data["nodes"]] == ["primary"] * 3 + ["replica"] * 3
    assert [n["primary_address"] for n in data["nodes"][3:]] == addresses[:3]
    assert [n["slot_count"] for n in data["nodes"]] == [5462, 5461, 5461, 0, 0, 0]
    assert data["node_timeout_ms"] == 1000
    assert data["connect"]["addresses"] == addresses
    pids = [n["pid"] for n in data["nodes"]]

    # The servers outlived clusterctl, and the cluster is formed and healthy.
    assert all(pid_alive(pid) for pid in pids)
    for i, node in enumerate(data["nodes"]):
        node_dir = cluster_dir / f"node-{base + i}"
        assert (node_dir / "server.pid").read_text().strip() == str(node["pid"])
        assert Path(node["log"]) == (node_dir / "server.log").resolve()
        assert "ready on" in (node_dir / "server.log").read_text()
    checked = run_cli("check", addresses[0], "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["warnings"] == []
    state = fetch_state(addresses[1], 5.0)
    assert state.cluster_ok and state.known_nodes == 6 and state.node_timeout_ms == 1000
    assert state.size == 3

    # The printed Python snippet works as printed.
    snippet = run_python(data["connect"]["python"])
    assert snippet.returncode == 0, snippet.stderr
    assert snippet.stdout.strip() == "b'hello'"

    again = up(cluster_dir, base)
    assert again.returncode == 1
    assert f"a cluster is already running from {cluster_dir}" in again.stderr
    assert f"clusterctl down --dir {cluster_dir}" in again.stderr
    assert all(pid_alive(pid) for pid in pids)

    down = run_cli("down", "--dir", str(cluster_dir), "--json")
    assert down.returncode == 0, down.stderr
    stopped = json.loads(down.stdout)["stopped"]
    assert sorted(s["pid"] for s in stopped) == sorted(pids)
    assert {s["outcome"] for s in stopped} == {"stopped"}
    assert not any(pid_alive(pid) for pid in pids)
    assert not list(cluster_dir.glob("*/server.pid"))
    assert not local.discover(cluster_dir).running

    idle = run_cli("down", "--dir", str(cluster_dir))
    assert idle.returncode == 0
    assert f"nothing is running from {cluster_dir}" in idle.stdout


def test_up_again_after_down_forms_a_new_cluster(cluster_dir: Path) -> None:
    base = free_port_block(2)
    first = up(cluster_dir, base, "--primaries", "2", "--replicas", "0", "--json")
    assert first.returncode == 0, first.stderr
    assert run_cli("down", "--dir", str(cluster_dir)).returncode == 0

    second = up(cluster_dir, base, "--primaries", "2", "--replicas", "0", "--json")
    assert second.returncode == 0, second.stderr
    old_ids = {n["id"] for n in json.loads(first.stdout)["nodes"]}
    new = json.loads(second.stdout)["nodes"]
    assert old_ids.isdisjoint(n["id"] for n in new)
    # Logs are kept across runs, one start banner per run.
    log = (cluster_dir / f"node-{base}" / "server.log").read_text()
    assert log.count("=== clusterctl up: starting") == 2


def test_up_prints_how_to_connect(cluster_dir: Path) -> None:
    base = free_port_block(2)
    result = up(cluster_dir, base, "--primaries", "1")
    assert result.returncode == 0, result.stderr
    address = f"127.0.0.1:{base}"
    assert "cluster is up: 1 primary with 1 replica each (2 nodes)" in result.stdout
    assert f"replica of {address}" in result.stdout
    assert f'slotcache.Client("{address}")' in result.stdout
    assert f"{address} slotcache.v1.Cache/Get" in result.stdout
    assert f"clusterctl check {address}" in result.stdout
    assert f"clusterctl down --dir {cluster_dir}" in result.stdout
    assert "starting 2 nodes" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_foreground_stops_the_cluster_on_a_signal(cluster_dir: Path, sig: signal.Signals) -> None:
    base = free_port_block(6)
    with foreground_up(cluster_dir, base, *FAST) as (proc, data):
        assert data["foreground"] is True
        pids = [n["pid"] for n in data["nodes"]]
        assert all(pid_alive(pid) for pid in pids)
        time.sleep(0.5)
        assert proc.poll() is None, "foreground mode must stay attached"

        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopping the cluster" in err and "stopped 6 nodes" in err
    assert not any(pid_alive(pid) for pid in pids)
    assert not local.discover(cluster_dir).running


def test_up_refuses_ports_in_use_and_starts_nothing(cluster_dir: Path) -> None:
    base = free_port_block(6)
    with socket.socket() as blocker:
        blocker.bind((local.HOST, base + 10001))
        blocker.listen()
        result = up(cluster_dir, base)
    assert result.returncode == 1
    assert f"port(s) {base + 10001} on 127.0.0.1 are already in use" in result.stderr
    assert not local.discover(cluster_dir).running
    assert not list(cluster_dir.glob("*/server.pid"))


def test_a_failed_up_stops_every_node_it_started(
    ctl: Ctl, cluster_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned: list[int] = []
    real_spawn = local.spawn

    def spawn_and_record(*args: object, **kwargs: object) -> list[object]:
        servers = real_spawn(*args, **kwargs)  # type: ignore[arg-type]
        spawned.extend(s.pid for s in servers)
        return servers  # type: ignore[return-value]

    def refuse(*args: object, **kwargs: object) -> None:
        raise OperationError("simulated failure while forming the cluster")

    monkeypatch.setattr(local, "spawn", spawn_and_record)
    monkeypatch.setattr(local_commands, "create_cluster", refuse)
    base = free_port_block(4)
    result = ctl("up", "--dir", str(cluster_dir), "--base-port", str(base), "--primaries", "2")
    assert result.code == 1
    assert "simulated failure" in result.err
    assert len(spawned) == 4
    assert not any(pid_alive(pid) for pid in spawned)
    assert not local.discover(cluster_dir).running


def test_down_with_nothing_running(ctl: Ctl, tmp_path: Path) -> None:
    missing = tmp_path / "never-created"
    result = ctl("down", "--dir", str(missing))
    assert result.code == 0
    assert "nothing is running" in result.out
    as_json = ctl("down", "--dir", str(missing), "--json")
    assert json.loads(as_json.out)["stopped"] == []


def test_down_never_kills_a_process_behind_a_stale_pid_file(ctl: Ctl, tmp_path: Path) -> None:
    root = tmp_path / "stale"
    node_dir = root / "node-7000"
    node_dir.mkdir(parents=True)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (node_dir / "server.pid").write_text(f"{bystander.pid}\n")
        result = ctl("down", "--dir", str(root))
        assert result.code == 0
        assert "removed a stale pid file for 127.0.0.1:7000" in result.err
        assert "nothing is running" in result.out
        assert bystander.poll() is None
        assert not (node_dir / "server.pid").exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_down_finds_a_server_whose_pid_file_was_lost(cluster_dir: Path) -> None:
    base = free_port_block(1)
    started = up(cluster_dir, base, "--primaries", "1", "--replicas", "0", "--json")
    assert started.returncode == 0, started.stderr
    pid = json.loads(started.stdout)["nodes"][0]["pid"]
    (cluster_dir / f"node-{base}" / "server.pid").unlink()

    down = run_cli("down", "--dir", str(cluster_dir))
    assert down.returncode == 0, down.stderr
    assert f"127.0.0.1:{base} (pid {pid}): stopped" in down.stdout
    assert not pid_alive(pid)


def test_down_kills_a_node_that_ignores_sigterm(cluster_dir: Path) -> None:
    base = free_port_block(1)
    started = up(cluster_dir, base, "--primaries", "1", "--replicas", "0", "--json")
    assert started.returncode == 0, started.stderr
    pid = json.loads(started.stdout)["nodes"][0]["pid"]
    os.kill(pid, signal.SIGSTOP)  # down sends SIGCONT after SIGTERM, so this alone is not enough
    try:
        down = run_cli("down", "--dir", str(cluster_dir), "--stop-timeout", "0.5")
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGCONT)
    assert down.returncode == 0, down.stderr
    assert not pid_alive(pid)
