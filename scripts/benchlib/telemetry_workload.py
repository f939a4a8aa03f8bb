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


@contextmanager
def scraping(port: int) -> Iterator[list[int]]:
    """Scrape ``/metrics`` every period until the block ends; yields the scrape count."""
    done = threading.Event()
    count = [0]

    def run() -> None:
        while not done.wait(SCRAPE_PERIOD_S):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                r.read()
            count[0] += 1

    thread = threading.Thread(target=run, name="scraper", daemon=True)
    thread.start()
    try:
        yield count
    finally:
        done.set()
        thread.join(10)


def scraped(side: Side, port: int, scrapes: list[int]) -> Side:
    """``side`` with a scraper running during each of its windows."""

    def run(spec: LoadSpec) -> LoopResult:
        with scraping(port) as count:
            result = side(spec)
        scrapes[0] += count[0]
        return result

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
    scrapes = [0]
    sides = {
        ON: scraped(bound(W1, targets[ON]), ports[ON], scrapes),
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
            "scrapes": scrapes[0],
            "access_log_lines": lines,
            "pids": {side: t.pid for side, t in targets.items()},
            **{side: window_details(res) for side, res in merged.items()},
        },
        notes=[
            f"on: /metrics scraped every {SCRAPE_PERIOD_S:g} s while measured ({scrapes[0]} "
            f"scrapes), access log 1 in {ACCESS_LOG_SAMPLE} ({lines} lines), hot keys 1 in "
            f"{HOTKEYS_SAMPLE}; off: none of them. Targets: throughput ratio >= 0.97, server "
            "CPU per op ratio <= 1.05."
        ],
    )
