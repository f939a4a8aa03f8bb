"""Parses h2load's summary and decides whether its responses were real gRPC successes.

h2load counts an HTTP 200 as success, but gRPC reports errors in trailers
after a 200. A successful Get reply carries a DATA frame of a known size and
an error carries none, so the DATA byte count per request tells them apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FINISHED = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")
_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_TRAFFIC = re.compile(r"traffic: .*?, .*? \((\d+)\) headers .*?, .*? \((\d+)\) data")


@dataclass(frozen=True)
class H2loadSummary:
    """The figures of one h2load run."""

    seconds: float
    req_per_s: float
    total: int
    started: int
    done: int
    succeeded: int
    failed: int
    errored: int
    timeout: int
    status_2xx: int
    status_other: int
    data_bytes: int

    def problems(self, expected_data_per_reply: int) -> list[str]:
        """Why the run does not count as successful gRPC responses; empty if it does."""
        out = []
        if self.succeeded == 0:
            out.append("no request succeeded")
        if self.failed or self.errored or self.timeout:
            out.append(
                f"{self.failed} failed, {self.errored} errored, {self.timeout} timed out requests"
            )
        if self.status_other:
            out.append(f"{self.status_other} non-2xx HTTP statuses")
        # Requests still in flight when the run ends may have received their DATA.
        low = self.status_2xx * expected_data_per_reply
        high = low + (self.started - self.done) * expected_data_per_reply
        if self.status_2xx and not low <= self.data_bytes <= high:
            per_reply = self.data_bytes / self.status_2xx
            out.append(
                f"{per_reply:.1f} DATA bytes per reply, expected {expected_data_per_reply}: "
                "some replies were gRPC errors or not the expected value"
            )
        return out


def parse(output: str) -> H2loadSummary:
    """Read h2load's stdout; raise ValueError naming the line that is missing."""
    finished = _search(_FINISHED, output, "finished in")
    requests = _search(_REQUESTS, output, "requests:")
    status = _search(_STATUS, output, "status codes:")
    traffic = _search(_TRAFFIC, output, "traffic:")
    seconds = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    total, started, done, succeeded, failed, errored, timeout = map(int, requests.groups())
    s2xx, s3xx, s4xx, s5xx = map(int, status.groups())
    return H2loadSummary(
        seconds=seconds,
        req_per_s=float(finished.group(3)),
        total=total,
        started=started,
        done=done,
        succeeded=succeeded,
        failed=failed,
        errored=errored,
        timeout=timeout,
        status_2xx=s2xx,
        status_other=s3xx + s4xx + s5xx,
        data_bytes=int(traffic.group(2)),
    )


def _search(pattern: re.Pattern[str], text: str, what: str) -> re.Match[str]:
    match = pattern.search(text)
    if match is None:
        raise ValueError(f"h2load output has no {what!r} line:\n{text}")
    return match
