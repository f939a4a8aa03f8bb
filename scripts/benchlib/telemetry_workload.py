"""Telemetry: what metrics, the access log and hot-key sampling cost, slotcache against itself.

W1 (64 asyncio tasks, GET/SET 50/50) runs in alternating rounds against two
standalone nodes started side by side: ``on`` with the Prometheus endpoint
(scraped every 5 s while it is measured, three times as often as the
documented 15 s; one scrape costs the node a few ms of CPU), the access
log at 1 in 100 to a file, and hot-key sampling; ``off`` with all three off.
The slow log and the latency buckets stay on in both (they cannot be turned
off; their cost is in both sides). Both sides see the same
background load, so the ratios hold on a shared machine.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from benchlib.client_workloads import (
    W1,
    LoadSpec,
    Side,
    bound,
    load_details,
    w1_against_itself,
    window_details,
)
from benchlib.loops import LoopResult
from benchlib.peers import SLOTCACHE, Target
from benchlib.processes import slotcache_server
from benchlib.results import WorkloadResult
from benchlib.shared_servers import SharedServers
from slotcache.ctl.launcher import free_port

TITLE = "telemetry overhead, W1: everything on vs off"
ON, OFF = "on", "off"
REFERENCE = OFF
SCRAPE_PERIOD_S = 5.0
ACCESS_LOG_SAMPLE = 100
HOTKEYS_SAMPLE = 16


def flags(side: str, work_dir: Path) -> tuple[str, ...]:
    """The server flags of one side."""
    if side == OFF:
        return ("--metrics-port", "0", "--hotkeys-sample", "0")
    return (
        "--metrics-port",
        str(free_port()),
        "--access-log",
        str(work_dir / "access.log"),
        "--access-log-sample",
        str(ACCESS_LOG_SAMPLE),
        "--hotkeys-sample",
        str(HOTKEYS_SAMPLE),
    )


class Scraper:
    """Scrapes ``/metrics`` every period of the time its side runs, across that side's windows.

    A round's window is often shorter than the period: a scraper restarted
    with each window would then never scrape. The time left until the next
    scrape carries over from one window to the next instead, as if the
    side's windows were one stretch of time under a real scraper.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.count = 0
        self._left_s = SCRAPE_PERIOD_S

    @contextmanager
    def running(self) -> Iterator[None]:
        """Scrape on schedule until the block ends."""
        done = threading.Event()

        def run() -> None:
            while True:
                started = time.monotonic()
                if done.wait(self._left_s):
                    self._left_s -= time.monotonic() - started
                    return
                url = f"http://127.0.0.1:{self.port}/metrics"
                with urllib.request.urlopen(url, timeout=5) as r:
                    r.read()
                self.count += 1
                self._left_s = SCRAPE_PERIOD_S

        thread = threading.Thread(target=run, name="scraper", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(10)


def scraped(side: Side, scraper: Scraper) -> Side:
    """``side`` with ``scraper`` running during each of its windows."""

    def run(spec: LoadSpec) -> LoopResult:
        with scraper.running():
            return side(spec)

    return run


def run(stack: ExitStack, servers: SharedServers, work_dir: Path, spec: LoadSpec) -> WorkloadResult:
    """Measure W1 on the ``on`` and ``off`` nodes in alternating rounds."""
    targets: dict[str, Target] = {}
    ports: dict[str, int] = {}
    for side in (ON, OFF):
        side_dir = work_dir / f"telemetry-{side}"
        side_dir.mkdir(exist_ok=True)
        side_flags = flags(side, side_dir)
        process = stack.enter_context(slotcache_server(side_dir, side_flags))
        targets[side] = servers.loaded(Target.of(SLOTCACHE, process))
        ports[side] = int(side_flags[1])
    scraper = Scraper(ports[ON])
    sides = {
        ON: scraped(bound(W1, targets[ON]), scraper),
        OFF: bound(W1, targets[OFF]),
    }
    metrics, merged = w1_against_itself(sides, spec, ON, OFF)
    access_log = work_dir / f"telemetry-{ON}" / "access.log"
    lines = len(access_log.read_text().splitlines()) if access_log.exists() else 0
    return WorkloadResult(
        "telemetry",
        TITLE,
        REFERENCE,
        metrics,
        details={
            "load": load_details(W1, spec),
            "flags": {side: list(flags(side, Path("<dir>"))) for side in (ON, OFF)},
            "scrapes": scraper.count,
            "access_log_lines": lines,
            "pids": {side: t.pid for side, t in targets.items()},
            **{side: window_details(res) for side, res in merged.items()},
        },
        notes=[
            f"on: /metrics scraped every {SCRAPE_PERIOD_S:g} s while measured ({scraper.count} "
            f"scrapes), access log 1 in {ACCESS_LOG_SAMPLE} ({lines} lines), hot keys 1 in "
            f"{HOTKEYS_SAMPLE}; off: none of them. Targets: throughput ratio >= 0.97, server "
            "CPU per op ratio <= 1.05."
        ],
    )
