"""Reads a process's resident memory and CPU time from /proc.

The parsers are separate from the reads so they can be tested on fixed text.
"""

from __future__ import annotations

import os
from pathlib import Path

_PROC = Path("/proc")


def parse_vmrss(status_text: str) -> int:
    """Resident set size in bytes from the text of ``/proc/<pid>/status``."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            amount, unit = line.split()[1:3]
            if unit.lower() != "kb":
                raise ValueError(f"unexpected VmRSS unit {unit!r}")
            return int(amount) * 1024
    raise ValueError("no VmRSS line (is the process a zombie?)")


def parse_cpu_ticks(stat_text: str) -> int:
    """User plus system CPU time, in clock ticks, from the text of ``/proc/<pid>/stat``.

    The command name (field 2) may contain spaces and parentheses, so the
    fields are counted from the last ``)``.
    """
    fields = stat_text[stat_text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(fields[11]) + int(fields[12])


def parse_busy_ticks(stat_text: str) -> int:
    """Non-idle CPU time of the whole machine, in clock ticks, from ``/proc/stat``.

    Counts user, nice, system, irq, softirq and steal (guest time is already
    inside user); idle and iowait are the idle time.
    """
    fields = stat_text.splitlines()[0].split()
    if fields[0] != "cpu":
        raise ValueError("the first line of /proc/stat is not the 'cpu' total")
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[1:9])
    return user + nice + system + irq + softirq + steal


def rss_bytes(pid: int) -> int:
    """Current resident set size of ``pid``."""
    return parse_vmrss((_PROC / str(pid) / "status").read_text())


def cpu_seconds(pid: int) -> float:
    """CPU time ``pid`` has used so far, all threads, user plus system."""
    ticks = parse_cpu_ticks((_PROC / str(pid) / "stat").read_text())
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time all processes on the machine have used so far, summed over cores."""
    return parse_busy_ticks((_PROC / "stat").read_text()) / os.sysconf("SC_CLK_TCK")
