"""Process figures read from the OS at collection time (Linux /proc; elsewhere, what is known)."""

from __future__ import annotations

import os
import resource
from pathlib import Path

_ESTABLISHED = "01"
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident memory now (the peak where /proc is missing)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_seconds() -> tuple[float, float]:
    """User and system CPU seconds of the process so far."""
    times = os.times()
    return times.user, times.system


def established_connections(port: int) -> int:
    """TCP connections established to local ``port``: the connected clients.

    gRPC does not expose its connections; the kernel's socket table does, and
    reading it costs nothing on the request path.
    """
    suffix = f":{port:04X}"
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == _ESTABLISHED and fields[1].endswith(suffix):
                count += 1
    return count
