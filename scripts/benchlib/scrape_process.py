"""A Prometheus-like scraper in a process of its own, scraping only while its node is measured.

A real Prometheus runs on another machine. A scraper thread inside the
load generator would instead share that process (the bottleneck of W1)
with the load during one side's windows only, and the measured side would
pay for it in client CPU and throughput. So the scraper is a child
process: it costs the machine what a scrape costs, and nothing inside the
processes being compared except the node's own answer to the scrape.

Protocol on stdin, one command per line: ``run`` starts or resumes the
schedule, ``pause`` stops it; the child answers each command with the
number of scrapes so far. The time left until the next scrape carries
over a pause, as if the node's windows were one stretch of time under a
real scraper (a window is often shorter than the period). End of input
ends the child.

This file runs as a script (``python scrape_process.py PORT PERIOD_S``)
and imports only the standard library.
"""

from __future__ import annotations

import select
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

RUN, PAUSE = "run", "pause"


def serve(port: int, period_s: float) -> None:
    """The child's loop: scrape every ``period_s`` of running time, answer each command."""
    url = f"http://127.0.0.1:{port}/metrics"
    left_s, running, count = period_s, False, 0
    stdin = sys.stdin.buffer
    while True:
        started = time.monotonic()
        ready, _, _ = select.select([stdin], [], [], left_s if running else None)
        if running:
            left_s -= time.monotonic() - started
        if not ready:
            with urllib.request.urlopen(url, timeout=5) as reply:
                reply.read()
            count += 1
            left_s = period_s
            continue
        line = stdin.readline()
        if not line:
            return
        running = line.strip().decode() == RUN
        print(count, flush=True)


class ScrapeProcess:
    """The parent's handle on one scraper child; as a context manager, the child ends on exit."""

    def __init__(self, port: int, period_s: float) -> None:
        self._child = subprocess.Popen(
            [sys.executable, __file__, str(port), str(period_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.count = 0

    def _tell(self, command: str) -> None:
        """Send a command and wait for its answer: the schedule has switched when this returns."""
        child = self._child
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(command + "\n")
        child.stdin.flush()
        answer = child.stdout.readline()
        if not answer:
            raise RuntimeError(f"the scraper process ended (exit status {child.wait()})")
        self.count = int(answer)

    @contextmanager
    def running(self) -> Iterator[None]:
        """Scrape on schedule until the block ends."""
        self._tell(RUN)
        try:
            yield
        finally:
            self._tell(PAUSE)

    def __enter__(self) -> ScrapeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the child."""
        child = self._child
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


if __name__ == "__main__":
    serve(int(sys.argv[1]), float(sys.argv[2]))
