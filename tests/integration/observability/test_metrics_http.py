"""The /metrics HTTP server on its own: it sleeps between scrapes and stops at once."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

from prometheus_client import CollectorRegistry, Counter

from slotcache.ctl.launcher import LOOPBACK, free_port
from slotcache_server.observability.metrics_http import serve_metrics

IDLE_S = 0.5
# Far under the old 20 ms poll's 25 wake-ups in IDLE_S (and socketserver's default of 0.5 s).
MAX_IDLE_WAKEUPS = 3
STOP_MAX_S = 0.2


def _thread_switches(name: str) -> int:
    """Voluntary context switches of this process's thread ``name`` (each is one wake-up)."""
    native = next(t.native_id for t in threading.enumerate() if t.name == name)
    with open(f"/proc/self/task/{native}/status") as status:
        line = next(line for line in status if line.startswith("voluntary_ctxt_switches"))
    return int(line.split()[1])


def test_the_endpoint_sleeps_between_scrapes_and_stops_at_once() -> None:
    registry = CollectorRegistry(auto_describe=False)
    Counter("probe", "a probe counter", registry=registry).inc(3)
    port = free_port()
    server = serve_metrics(LOOPBACK, port, registry)
    try:
        url = f"http://{LOOPBACK}:{port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            assert "probe_total 3.0" in reply.read().decode()
        before = _thread_switches("metrics-http")
        time.sleep(IDLE_S)
        assert _thread_switches("metrics-http") - before <= MAX_IDLE_WAKEUPS
        with urllib.request.urlopen(url, timeout=5) as reply:
            assert reply.status == 200
    finally:
        started = time.monotonic()
        server.shutdown()
        server.server_close()
        stopped_in = time.monotonic() - started
    assert stopped_in < STOP_MAX_S
    assert not any(t.name == "metrics-http" for t in threading.enumerate())
    # The port is free again: a restarted node can bind it (as the server does, reusing it).
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
