"""The timed loops that drive load, shared by every peer.

Each peer gets the very same loop and differs only in the operation it is
handed, so the harness costs both sides the same and the ratio is fair. A
warm-up runs first (connections opened, caches and pools filled), then the
loop counts operations over a measured window.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from benchlib.stats import rate

AsyncOp = Callable[[], Awaitable[object]]
SyncOp = Callable[[], object]
Probe = Callable[[], dict[str, float]]


def _no_probe() -> dict[str, float]:
    return {}


def _growth(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in before}


@dataclass(frozen=True)
class LoopResult:
    """Operations completed in the measured window, and what the probe saw over it.

    ``probe_delta`` is how much each of the probe's cumulative readings (e.g.
    the server's CPU seconds) grew during the window; ``latencies_ns`` is filled by the
    blocking loop only.
    """

    operations: int
    seconds: float
    probe_delta: dict[str, float] = field(default_factory=dict)
    latencies_ns: array[int] = field(default_factory=lambda: array("q"))

    @property
    def per_second(self) -> float:
        """Operations per second over the window."""
        return rate(self.operations, self.seconds)

    @staticmethod
    def merge(parts: Sequence[LoopResult]) -> LoopResult:
        """Several windows of the same load (one per round) as if they were one."""
        if not parts:
            raise ValueError("nothing to merge")
        latencies = array("q")
        probe: dict[str, float] = {}
        for part in parts:
            latencies.extend(part.latencies_ns)
            for name, value in part.probe_delta.items():
                probe[name] = probe.get(name, 0.0) + value
        return LoopResult(
            sum(p.operations for p in parts), sum(p.seconds for p in parts), probe, latencies
        )


async def run_concurrent(
    make_op: Callable[[int], AsyncOp],
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    probe: Probe = _no_probe,
) -> LoopResult:
    """Run ``concurrency`` tasks, each awaiting its operation back to back.

    ``make_op(i)`` builds task ``i``'s operation, so a task may keep state
    (e.g. alternate MGET and MSET). Counts are read at the window's edges
    while the tasks keep running, so neither the ramp-up nor the drain is in
    the figure. The first failing operation fails the run.
    """
    counts = [0] * concurrency
    running = True

    async def worker(i: int) -> None:
        op = make_op(i)
        while running:
            await op()
            counts[i] += 1

    tasks = [asyncio.create_task(worker(i)) for i in range(concurrency)]
    try:
        await _sleep_watching(warmup_s, tasks)
        ops0, p0, t0 = sum(counts), probe(), time.perf_counter()
        await _sleep_watching(duration_s, tasks)
        ops1, p1, t1 = sum(counts), probe(), time.perf_counter()
    finally:
        running = False
        done = await asyncio.gather(*tasks, return_exceptions=True)
    for outcome in done:
        if isinstance(outcome, BaseException):
            raise outcome
    return LoopResult(ops1 - ops0, t1 - t0, _growth(p0, p1))


async def _sleep_watching(seconds: float, tasks: list[asyncio.Task[None]]) -> None:
    """Sleep, but return early (so the caller raises) as soon as a task has failed."""
    await asyncio.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_EXCEPTION)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise RuntimeError("a load task failed") from task.exception()


def run_blocking(
    op: SyncOp, warmup_s: float, duration_s: float, probe: Probe = _no_probe
) -> LoopResult:
    """Call ``op`` back to back from one thread and record every call's latency."""
    clock = time.perf_counter_ns
    warm_until = clock() + int(warmup_s * 1e9)
    while clock() < warm_until:
        op()
    latencies = array("q")
    record = latencies.append
    p0 = probe()
    start = now = clock()
    end = start + int(duration_s * 1e9)
    while now < end:
        op()
        after = clock()
        record(after - now)
        now = after
    return LoopResult(len(latencies), (now - start) / 1e9, _growth(p0, probe()), latencies)
