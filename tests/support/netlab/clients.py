"""Client processes in lab namespaces (:mod:`.client`), started, stopped and read back here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.history import OK, Op, parse
from tests.support.netlab.lab import Host, NetLab
from tests.support.nodes import wait_for

REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass
class ClientProcess:
    """A running client; its history is in ``out``."""

    name: str
    host: Host
    proc: subprocess.Popen[bytes]
    out: Path

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (the client finishes the call in flight), then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def ops(self) -> list[Op]:
        if not self.out.exists():
            return []
        return parse(self.out.read_text().splitlines())

    def acknowledged(self) -> int:
        """Operations acknowledged so far."""
        return sum(1 for op in self.ops() if op.outcome == OK)


def start_client(
    lab: NetLab,
    host: Host,
    name: str,
    targets: Sequence[str],
    keys: Sequence[bytes],
    workdir: Path,
    *options: str,
) -> ClientProcess:
    """Start a client process in ``host``'s namespace (options: the client's flags)."""
    workdir.mkdir(parents=True, exist_ok=True)
    keys_file = workdir / f"{name}.keys.json"
    keys_file.write_text(json.dumps([k.decode("latin-1") for k in keys]))
    out = workdir / f"{name}.ops.jsonl"
    argv = [
        sys.executable,
        "-m",
        "tests.support.netlab.client",
        "--name",
        name,
        "--targets",
        ",".join(targets),
        "--keys-file",
        str(keys_file),
        "--out",
        str(out),
        *options,
    ]
    env_path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    proc = lab.spawn(host, ["env", f"PYTHONPATH={env_path}", *argv], workdir / f"{name}.log")
    return ClientProcess(name, host, proc, out)


def wait_acknowledged(clients: Iterable[ClientProcess], count: int, timeout: float = 30.0) -> None:
    """Wait until every client has ``count`` operations acknowledged (it started and is served).

    A fault injected before that would find a client still starting (Python
    and gRPC take a second or more on a loaded machine), and a scenario
    would have no acknowledged history from before the fault to check.
    """
    clients = list(clients)
    wait_for(
        lambda: all(c.acknowledged() >= count for c in clients),
        timeout,
        f"every client to have {count} operations acknowledged",
        interval=0.1,
    )


def stop_all(clients: Iterable[ClientProcess]) -> list[Op]:
    """Stop every client (all signalled first) and return their histories, concatenated."""
    clients = list(clients)
    for c in clients:
        if c.proc.poll() is None:
            c.proc.send_signal(signal.SIGTERM)
    ops: list[Op] = []
    for c in clients:
        c.stop()
        ops.extend(c.ops())
    return ops
