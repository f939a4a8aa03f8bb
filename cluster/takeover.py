"""Starting a node's replacement before the node stops: ``--takeover-pid``.

While a node restarts, its shard has one copy fewer: with one replica per
primary, a write that needs a replica waits for the whole time. Most of a
new server process's start is the interpreter importing grpc, protobuf and
the rest, which needs neither the data directory nor the ports. So the
replacement is started first, with the old process's pid: it imports
everything, says in the data directory that it stands by, and only once
the old process has exited (its snapshot saved, its ports closed) does it
read the data directory and bind. The two never serve at once, and the
replacement never reads a snapshot or node file still being written.

The wait is bounded: a replacement whose predecessor does not exit in time
gives up with an error and touches nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import time
from pathlib import Path

from slotcache.contract import STANDBY_FILE

log = logging.getLogger(__name__)

# Used only where pidfd_open is missing (it needs Linux 5.3).
_POLL_S = 0.005


class TakeoverError(RuntimeError):
    """The process to take over from did not exit in time."""


def standby_path(data_dir: Path) -> Path:
    """Holds the pid of a replacement waiting for this directory's current process to exit."""
    return data_dir / STANDBY_FILE


def stand_by(data_dir: Path, pid: int) -> Path:
    """Tell whoever restarts the node that its replacement is ready to take over.

    Written atomically, so a reader sees either no file or the whole pid.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = standby_path(data_dir)
    temporary = path.with_name(f"{path.name}.{pid}.tmp")
    temporary.write_text(f"{pid}\n")
    temporary.replace(path)
    return path


def standing_by(data_dir: Path) -> int | None:
    """The pid of the replacement standing by for ``data_dir``, if any."""
    try:
        return int(standby_path(data_dir).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def exited(pid: int) -> bool:
    """The process is gone, or only a zombie its parent has not reaped yet."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] in {"Z", "X"}
    return False


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` has exited; False if it still runs after ``timeout`` seconds.

    A pidfd becomes readable the moment the process exits, zombie or not,
    so the replacement starts loading without a polling delay.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except (AttributeError, OSError):
        return _poll_exit(pid, timeout)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(max(0, int(timeout * 1000))))
    finally:
        os.close(fd)


def _poll_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not exited(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
    return True


def take_over(data_dir: Path, pid: int, timeout: float) -> float:
    """Stand by until process ``pid`` has left ``data_dir``; return the seconds waited.

    Raises TakeoverError, leaving the directory as it was but for the
    standby file, when it is still running after ``timeout``.
    """
    began = time.monotonic()
    path = stand_by(data_dir, os.getpid())
    try:
        log.info("standing by to take over %s from pid %d (up to %.0fs)", data_dir, pid, timeout)
        if not wait_exit(pid, timeout):
            raise TakeoverError(
                f"pid {pid} still runs after {timeout:g}s; not taking over {data_dir} "
                "(stop it first, or raise --takeover-timeout)"
            )
    finally:
        if standing_by(data_dir) == os.getpid():
            path.unlink(missing_ok=True)
    waited = time.monotonic() - began
    log.info("pid %d exited; taking over %s after %.2fs standing by", pid, data_dir, waited)
    return waited
