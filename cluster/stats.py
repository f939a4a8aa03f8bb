"""Operation counters for the hot path.

Counting is a plain dict increment per operation; exporters (the Info RPC
now, OpenTelemetry observable instruments later) read the dict when asked,
so the request path never pays for telemetry calls.
"""

from __future__ import annotations

from collections import defaultdict

import grpc

STATUS_NAMES = {code: code.name.lower() for code in grpc.StatusCode}


class OpCounters:
    """Counts of operations by ``<op>.<status>``, e.g. ``get.ok`` or ``set.invalid_argument``."""

    def __init__(self) -> None:
        self.counts: defaultdict[str, int] = defaultdict(int)

    def ok(self, op: str) -> None:
        """Count a successful operation."""
        self.counts[op + ".ok"] += 1

    def failed(self, op: str, code: grpc.StatusCode) -> None:
        """Count a refused operation by its status."""
        self.counts[f"{op}.{STATUS_NAMES[code]}"] += 1

    def snapshot(self) -> dict[str, int]:
        """A copy for reporting."""
        return dict(self.counts)
