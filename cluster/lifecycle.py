"""The server process's own start, as a restart sees it."""

from __future__ import annotations

import os
from pathlib import Path


def process_age_s() -> float:
    """Seconds since this process was started (0 where /proc does not tell)."""
    try:
        fields = Path("/proc/self/stat").read_text().rpartition(")")[2].split()
        uptime_s = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    # Field 22 of the stat line, the start time in clock ticks after boot.
    started_s = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return max(0.0, uptime_s - started_s)
