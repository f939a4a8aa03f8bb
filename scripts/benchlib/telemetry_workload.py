"""Telemetry: what metrics, the access log and hot-key sampling cost, slotcache against itself.

W1 (64 asyncio tasks, GET/SET 50/50) runs in alternating rounds against
standalone nodes started side by side, in ``PAIRS`` pairs: ``on`` nodes
with the Prometheus endpoint (scraped every 5 s while measured, three
times as often as the documented 15 s, by a scraper process of its own:
see :mod:`benchlib.scrape_process`), the access log at 1 in 100 to a file,
and hot-key sampling; ``off`` nodes with all three off. The slow log and
the latency buckets stay on in both (they cannot be turned off; their
cost is in both sides). Each side's figures merge its nodes' windows:
identical nodes differ by a few percent in CPU per op from one process
to the next, and several per side average that out. Both sides see the
same background load, so the ratios hold on a shared machine.
"""

from __future__ import annotations

from contextlib import ExitStack
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
from benchlib.scrape_process import ScrapeProcess
from benchlib.shared_servers import SharedServers
from slotcache.ctl.launcher import free_port

TITLE = "telemetry overhead, W1: everything on vs off"
ON, OFF = "on", "off"
REFERENCE = OFF
SCRAPE_PERIOD_S = 5.0
ACCESS_LOG_SAMPLE = 100
# Nodes per side.
PAIRS = 2


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
    )  # hot keys at the node's default rate


def scraped(side: Side, scraper: ScrapeProcess) -> Side:
    """``side`` with ``scraper`` running during each of its windows."""

    def run(spec: LoadSpec) -> LoopResult:
        with scraper.running():
            return side(spec)

    return run


def side_group(side: str) -> str:
    """The group a side's windows are merged into: ``on-2`` is one of the ``on`` nodes."""
    return side.partition("-")[0]


def run(stack: ExitStack, servers: SharedServers, work_dir: Path, spec: LoadSpec) -> WorkloadResult:
    """Measure W1 on the ``on`` and ``off`` nodes in alternating rounds."""
    sides: dict[str, Side] = {}
    pids: dict[str, int] = {}
    scrapers: list[ScrapeProcess] = []
    for pair in range(1, PAIRS + 1):
        for group in (ON, OFF):
            side = f"{group}-{pair}"
            side_dir = work_dir / f"telemetry-{side}"
            side_dir.mkdir(exist_ok=True)
            side_flags = flags(group, side_dir)
            process = stack.enter_context(slotcache_server(side_dir, side_flags))
            target = servers.loaded(Target.of(SLOTCACHE, process))
            pids[side] = target.pid
            sides[side] = bound(W1, target)
            if group == ON:
                scraper = stack.enter_context(ScrapeProcess(int(side_flags[1]), SCRAPE_PERIOD_S))
                scrapers.append(scraper)
                sides[side] = scraped(sides[side], scraper)
    metrics, merged = w1_against_itself(sides, spec, ON, OFF, side_group)
    scrapes = sum(s.count for s in scrapers)
    logs = [work_dir / f"telemetry-{ON}-{pair}" / "access.log" for pair in range(1, PAIRS + 1)]
    lines = sum(len(log.read_text().splitlines()) for log in logs if log.exists())
    return WorkloadResult(
        "telemetry",
        TITLE,
        REFERENCE,
        metrics,
        details={
            "load": load_details(W1, spec),
            "flags": {side: list(flags(side, Path("<dir>"))) for side in (ON, OFF)},
            "pairs": PAIRS,
            "scrapes": scrapes,
            "access_log_lines": lines,
            "pids": pids,
            **{side: window_details(res) for side, res in merged.items()},
        },
        notes=[
            f"{PAIRS} nodes per side, windows merged per side; on: /metrics scraped every "
            f"{SCRAPE_PERIOD_S:g} s while measured ({scrapes} scrapes, from a process of its "
            f"own), access log 1 in {ACCESS_LOG_SAMPLE} ({lines} lines), hot keys at the "
            "default rate; off: none of them. Targets: throughput ratio >= 0.97, server "
            "CPU per op ratio <= 1.05."
        ],
    )
