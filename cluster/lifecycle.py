"""The server process's own start and end, trimmed to what a restart has to wait for.

A restarting node's shard is a copy short from the moment the old process
stops replicating until the new one has loaded its snapshot and resynced
(see cluster/takeover.py). Two costs of a Python process sit on that path
without doing any of the node's work:

- the garbage collector: after the imports, the first large allocations
  (the keyspace's 16384 slot tables, the snapshot's keys) trigger full
  collections that walk every object the imports made, tens to hundreds of
  milliseconds on a busy machine. Those objects live as long as the process,
  so they are moved out of the collector's sight once, right after the
  imports (``gc.freeze``);
- the interpreter's teardown after a clean stop: finalising grpc, its
  threads and every module takes 0.1-0.5 s, while the node's last duties
  (the snapshot fsynced, the node file saved, calls drained, logs
  flushed) are already done. The process leaves at once instead.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn


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


def freeze_imports() -> None:
    """Keep the objects made so far (modules, classes, descriptors) out of later collections."""
    gc.collect()
    gc.freeze()


def leave(status: int) -> NoReturn:
    """Exit with ``status`` now that the node has stopped, skipping the interpreter's teardown."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(status)
