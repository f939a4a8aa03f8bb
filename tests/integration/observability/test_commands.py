"""``clusterctl top --once --json``, ``slowlog`` and ``hotkeys`` against real nodes."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import random
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections import Counter

import pytest

import slotcache
from tests.support.processes import Cluster, ServerFactory


def _steady_reads(address: str, stop: threading.Event) -> threading.Thread:
    def run() -> None:
        with slotcache.Client(address) as client:
            while not stop.is_set():
                client.get("k1")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_top_once_json_reports_rates_and_gauges(servers: ServerFactory, ctl) -> None:
    server = servers()
    with slotcache.Client(server.address) as client:
        for i in range(25):
            client.set(f"k{i}", b"v")
    stop = threading.Event()
    reader = _steady_reads(server.address, stop)
    try:
        result = ctl("top", server.address, "--once", "--json", "--interval", "0.5")
    finally:
        stop.set()
        reader.join(5)
    assert result.code == 0, result.err
    (row,) = json.loads(result.out)
    assert row["address"] == server.address
    assert row["role"] == "primary"
    assert row["keys"] == 25
    assert row["ops_per_s"] > 0
    assert row["hit_ratio"] == 1.0
    assert row["p99_us"] is not None and row["p99_us"] >= 10
    assert row["clients"] >= 1
    assert row["memory_used"] > 0


def test_slowlog_keeps_the_slow_calls_newest_first(servers: ServerFactory, ctl) -> None:
    # Threshold 0: every call is slow, so what is kept is known exactly.
    server = servers("--slowlog-slower-than", "0", "--slowlog-max-len", "4")
    with slotcache.Client(server.address) as client:
        for i in range(6):
            client.set(f"key{i}", b"v")
    result = ctl("slowlog", server.address, "--json")
    assert result.code == 0, result.err
    entries = json.loads(result.out)
    assert sorted(e["key"] for e in entries) == ["key2", "key3", "key4", "key5"]
    assert {e["op"] for e in entries} == {"Set"} and {e["status"] for e in entries} == {"OK"}
    assert all(e["peer"].startswith("ipv4:127.0.0.1:") for e in entries)
    assert len(json.loads(ctl("slowlog", server.address, "--json", "--count", "2").out)) == 2
    assert ctl("slowlog", server.address, "--reset").code == 0
    assert json.loads(ctl("slowlog", server.address, "--json").out) == []


def test_slowlog_is_empty_under_a_high_threshold(servers: ServerFactory, ctl) -> None:
    server = servers("--slowlog-slower-than", "10000000")
    with slotcache.Client(server.address) as client:
        client.set("a", b"v")
    assert json.loads(ctl("slowlog", server.address, "--json").out) == []


def _zipf_keys(n_keys: int, accesses: int, s: float, seed: int) -> list[str]:
    rng = random.Random(seed)
    weights = [1 / (rank**s) for rank in range(1, n_keys + 1)]
    return [f"user:{i}" for i in rng.choices(range(n_keys), weights=weights, k=accesses)]


def test_hotkeys_finds_the_hot_keys_of_zipf_traffic_across_the_cluster(
    servers: ServerFactory,
    ctl,
) -> None:
    cluster = Cluster.start(servers, 3, 1000, "--hotkeys-sample", "4")
    accesses = _zipf_keys(2000, 24_000, 1.1, seed=7)
    with slotcache.Client(cluster.addresses[0]) as client:
        # MGet of 100 keys at a time: each key counts as one access on its owner.
        for start in range(0, len(accesses), 100):
            client.mget(accesses[start : start + 100])
    truth = Counter(accesses).most_common()
    result = ctl("hotkeys", cluster.addresses[1], "--json", "--count", "10")
    assert result.code == 0, result.err
    found = json.loads(result.out)
    names = [k["key"] for k in found]
    assert names[0] == truth[0][0]
    assert {key for key, _ in truth[:5]} <= set(names)
    nodes = {n for k in found for n in k["nodes"]}
    assert len(nodes) >= 2, "the top keys live on several primaries"
    for entry in found[:3]:
        true_count = dict(truth)[entry["key"]]
        assert abs(entry["count"] - true_count) <= 0.25 * true_count, (entry, true_count)


def _top_on_a_terminal(address: str) -> tuple[subprocess.Popen[bytes], int]:
    """``clusterctl top`` with a pseudo-terminal as its stdin and stdout, as an operator runs it."""
    controller, terminal = pty.openpty()
    # Wide enough for a whole row, as an operator's terminal would be.
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 220, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "slotcache.ctl.main", "top", address, "--interval", "0.2"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        close_fds=True,
        # rich prefers COLUMNS (a test runner may set it) to the terminal's own size.
        env={**os.environ, "COLUMNS": "220", "LINES": "50"},
    )
    os.close(terminal)
    return proc, controller


_ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def _exit_status(proc: subprocess.Popen[bytes], controller: int, timeout_s: float) -> int | None:
    """Wait for ``proc`` to exit while reading its terminal.

    Unread, the terminal fills up within seconds of refreshes, and top then
    blocks writing to it instead of acting on the key or the signal.
    """
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.1)
        if ready:
            try:
                os.read(controller, 65536)
            except OSError:  # the terminal's other end closed as top exited
                break
    return proc.wait(max(deadline - time.monotonic(), 0.1))


def _read_until(controller: int, text: bytes, timeout_s: float) -> bytes:
    """The terminal's output, without colour codes, once ``text`` shows (or time is up)."""
    seen = b""
    deadline = time.monotonic() + timeout_s
    while text not in _ANSI.sub(b"", seen) and time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.1)
        if ready:
            seen += os.read(controller, 65536)
    return _ANSI.sub(b"", seen)


@pytest.mark.parametrize("how", ["q", "ctrl-c"])
def test_live_top_refreshes_and_quits_on_q_or_ctrl_c(servers: ServerFactory, how: str) -> None:
    server = servers()
    proc, controller = _top_on_a_terminal(server.address)
    try:
        shown = _read_until(controller, server.address.encode(), 30)
        assert server.address.encode() in shown, shown[-2000:]
        if how == "q":
            os.write(controller, b"q")
        else:
            proc.send_signal(signal.SIGINT)
        assert _exit_status(proc, controller, 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(controller)
