"""clusterctl for tests: its result in-process, the CLI as a process, fresh nodes.

The unit tier checks clusterctl's argument handling in-process; the
integration tier runs it against real servers, in-process and as the
separate process an operator starts. Both read results the same way.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slotcache.ctl import local
from slotcache.ctl.launcher import ServerProcess
from tests.support.processes import ServerFactory


@dataclass
class Result:
    code: int
    out: str
    err: str


# The ``ctl`` fixture: ``ctl("nodes", addr)`` runs clusterctl in the test's process.
Ctl = Callable[..., Result]


def start_nodes(factory: ServerFactory, count: int, *extra_args: str) -> list[ServerProcess]:
    """``count`` fresh cluster-mode servers, booted in parallel (six take one boot, not six)."""
    nodes = [factory.create(*extra_args, cluster=True) for _ in range(count)]
    with ThreadPoolExecutor(max_workers=count) as pool:
        list(pool.map(lambda node: node.start(), nodes))
    return nodes


def ctl_command(*argv: str) -> list[str]:
    """clusterctl's command line, run with this interpreter."""
    return [sys.executable, "-m", "slotcache.ctl.main", *argv]


def run_cli(*argv: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    """clusterctl as a separate process, as an operator runs it.

    ``timeout`` only stops a hung command; a reshard of thousands of slots
    takes well under it.
    """
    return subprocess.run(
        ctl_command(*argv), capture_output=True, text=True, timeout=timeout, check=False
    )


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Python ``code`` (a snippet clusterctl printed) run as a user would, in its own process."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def kill_everything_from(root: Path) -> None:
    """Last resort after a test: stop (and if need be SIGKILL) any server still running there."""
    local.stop(local.discover(root).running, timeout=1.0)


@contextlib.contextmanager
def brought_down(root: Path) -> Iterator[Path]:
    """``root`` for ``clusterctl up``; whatever runs from it is stopped on the way out.

    ``clusterctl down`` first, as an operator would; then anything it left is killed.
    """
    try:
        yield root
    finally:
        run_cli("down", "--dir", str(root), "--stop-timeout", "5")
        kill_everything_from(root)


@contextlib.contextmanager
def foreground_up(
    root: Path, base: int, *extra: str, preexec_fn: Callable[[], Any] | None = None
) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    """``clusterctl up --foreground --json`` once it has printed the cluster; killed if left.

    The JSON is flushed as soon as the cluster is up; it is read up to its
    closing brace while the process stays attached.
    """
    proc = subprocess.Popen(
        ctl_command(
            "up", "--foreground", "--json", "--dir", str(root), "--base-port", str(base), *extra
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line == "}\n":
                break
        yield proc, json.loads("".join(lines))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
