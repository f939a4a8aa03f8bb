"""Local development clusters: server processes in the background, managed through one folder.

Layout of the folder (``clusterctl up --dir``, ``.cluster`` by default)::

    <dir>/node-<port>/          the node's --data-dir (its node file)
    <dir>/node-<port>/server.pid  written when the process starts, removed when it stops
    <dir>/node-<port>/server.log  the server's output, appended across runs

The processes outlive ``clusterctl up``, so later commands find them again
through the pid files. A pid file is trusted only when the process behind
it really is a slotcache-server whose data directory is in that folder: a
stale file whose pid was reused must never get an unrelated process killed.
A scan of the process table also finds servers whose pid file was lost,
and servers started by hand with a ``--data-dir`` named like a node's in
that folder (``.cluster/node-7006``), so ``down`` leaves nothing running.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from slotcache.ctl.certs import LocalCerts
from slotcache.ctl.cluster_ops import OperationError
from slotcache.ctl.launcher import LOOPBACK, SERVER_MODULE, SERVER_SCRIPT, ServerProcess

HOST = LOOPBACK
NODE_PREFIX = "node-"
PID_FILE = "server.pid"
LOG_FILE = "server.log"
# One process per node on one machine: past this, a typo (7000 for 7) is likelier than intent.
MAX_NODES = 64
_POLL_S = 0.05
_LOG_TAIL_CHARS = 3000


@dataclass(frozen=True)
class NodeSpec:
    """Where one node of a planned local cluster listens."""

    port: int
    bus_port: int

    @property
    def address(self) -> str:
        """``host:port`` of the client port."""
        return f"{HOST}:{self.port}"

    @property
    def bus_address(self) -> str:
        """``host:port`` of the cluster bus."""
        return f"{HOST}:{self.bus_port}"


def plan(nodes: int, base_port: int, bus_offset: int) -> list[NodeSpec]:
    """Consecutive client ports from ``base_port``, each bus port ``bus_offset`` higher.

    Raises ValueError, naming the option to change, when ports would leave
    1..65535 or a bus port would collide with another node's client port.
    """
    if not 1 <= nodes <= MAX_NODES:
        raise ValueError(f"a local cluster has 1..{MAX_NODES} nodes, not {nodes}")
    specs = [NodeSpec(base_port + i, base_port + i + bus_offset) for i in range(nodes)]
    if specs[-1].port > 65535:
        raise ValueError(
            f"--base-port {base_port} leaves no room for {nodes} client ports below 65536"
        )
    if specs[-1].bus_port > 65535:
        raise ValueError(
            f"bus ports would reach {specs[-1].bus_port} (> 65535); "
            "lower --base-port or --bus-port-offset"
        )
    if {s.port for s in specs} & {s.bus_port for s in specs}:
        raise ValueError(
            f"--bus-port-offset {bus_offset} makes bus ports collide with client ports; "
            f"use at least {nodes}"
        )
    return specs


@dataclass(frozen=True)
class LocalNode:
    """One node's files in the cluster folder."""

    root: Path
    port: int

    @property
    def dir(self) -> Path:
        """The node's data directory."""
        return self.root / f"{NODE_PREFIX}{self.port}"

    @property
    def pid_file(self) -> Path:
        """Holds the server's pid while it runs."""
        return self.dir / PID_FILE

    @property
    def log_file(self) -> Path:
        """The server's output."""
        return self.dir / LOG_FILE

    @property
    def address(self) -> str:
        """``host:port`` of the client port."""
        return f"{HOST}:{self.port}"

    def read_pid(self) -> int | None:
        """The recorded pid, or None when there is no readable pid file."""
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None


def node_of(data_dir: Path) -> LocalNode | None:
    """The node whose data directory ``data_dir`` is, if it is named like one of ours."""
    port = data_dir.name.removeprefix(NODE_PREFIX)
    if data_dir.name.startswith(NODE_PREFIX) and port.isdigit():
        return LocalNode(data_dir.parent, int(port))
    return None


def busy_ports(ports: Iterable[int]) -> list[int]:
    """The ports someone is already listening on (checked the way the server binds)."""
    busy = []
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            # The server sets SO_REUSEADDR too: a port in TIME_WAIT from the last run is usable.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((HOST, port))
            except OSError:
                busy.append(port)
    return busy


# ---- finding our processes ------------------------------------------------------------------


def _cmdline(pid: int) -> list[str] | None:
    """A process's arguments, or None when it is gone (or a zombie) or cannot be read."""
    proc = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self").exists():
        try:
            args = proc.read_bytes().split(b"\0")
        except OSError:
            return None
        return [a.decode(errors="replace") for a in args if a] or None
    try:
        out = subprocess.run(
            ["ps", "-ww", "-o", "args=", "-p", str(pid)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return None
    return out.split() or None


def _all_cmdlines() -> Iterator[tuple[int, list[str]]]:
    """Every visible process and its arguments (from /proc, else from ps)."""
    if Path("/proc/self").exists():
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                args = _cmdline(int(entry.name))
                if args:
                    yield int(entry.name), args
        return
    try:
        out = subprocess.run(
            ["ps", "-axww", "-o", "pid=,args="], capture_output=True, text=True, check=False
        ).stdout
    except OSError:
        return
    for line in out.splitlines():
        pid, _, command = line.strip().partition(" ")
        if pid.isdigit():
            yield int(pid), command.split()


def command_line(pid: int) -> list[str] | None:
    """The arguments a running process was started with; None when it is gone."""
    return _cmdline(pid)


def _cwd(pid: int) -> Path | None:
    """A process's working directory, where its relative paths start (None when unknown)."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def is_server(args: Sequence[str]) -> bool:
    """The arguments are those of a slotcache-server: its console script, or the module run."""
    return any(a == SERVER_MODULE or Path(a).name == SERVER_SCRIPT for a in args)


def _data_dir_arg(args: Sequence[str]) -> str | None:
    for flag, value in itertools.pairwise(args):
        if flag == "--data-dir":
            return value
    for arg in args:
        if arg.startswith("--data-dir="):
            return arg.partition("=")[2]
    return None


def server_node(args: Sequence[str], root: Path, cwd: Path | None = None) -> LocalNode | None:
    """The node of ``root`` that a process with arguments ``args`` serves, if any.

    A relative ``--data-dir`` (a node started by hand from the project
    folder: ``--data-dir .cluster/node-7006``) counts from the process's
    working directory ``cwd``; without it, such a node is not recognised.
    """
    value = _data_dir_arg(args) if is_server(args) else None
    if value is None:
        return None
    data_dir = Path(value)
    if not data_dir.is_absolute():
        if cwd is None:
            return None
        data_dir = Path(os.path.normpath(cwd / data_dir))
    if data_dir.parent == root.resolve():
        return node_of(data_dir)
    return None


def _process_node(pid: int, args: Sequence[str], root: Path) -> LocalNode | None:
    """:func:`server_node` for a running process (its working directory read only if needed)."""
    return server_node(args, root, _cwd(pid)) if is_server(args) else None


@dataclass(frozen=True)
class Found:
    """The servers running from a folder, and pid files that pointed at nothing of ours."""

    running: dict[int, LocalNode]
    stale: list[LocalNode]


def discover(root: Path) -> Found:
    """Which servers run from ``root`` right now; stale pid files are removed."""
    running: dict[int, LocalNode] = {}
    stale: list[LocalNode] = []
    root = root.resolve()
    if not root.is_dir():
        return Found(running, stale)
    for pid_file in sorted(root.glob(f"{NODE_PREFIX}*/{PID_FILE}")):
        node = node_of(pid_file.parent)
        if node is None:
            continue
        pid = node.read_pid()
        args = _cmdline(pid) if pid else None
        if pid and args and _process_node(pid, args, root) == node:
            running[pid] = node
        else:
            stale.append(node)
            pid_file.unlink(missing_ok=True)
    for pid, args in _all_cmdlines():
        node = _process_node(pid, args, root)
        if node is not None and pid not in running:
            running[pid] = node
    return Found(running, stale)


# ---- starting -------------------------------------------------------------------------------


def reset(node: LocalNode) -> None:
    """Empty the node's data directory except its log, so the node starts as a new node.

    A node file left by an earlier run would make the node rejoin that old
    cluster (and ``create`` refuse it); a cache keeps nothing worth more
    than a clean start.
    """
    if node.dir.is_dir():
        for entry in node.dir.iterdir():
            if entry.name == LOG_FILE:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    node.dir.mkdir(parents=True, exist_ok=True)


def spawn(
    root: Path, specs: Sequence[NodeSpec], node_timeout_ms: int, tls: LocalCerts | None = None
) -> list[ServerProcess]:
    """Start every node in the background, fresh, and record its pid; do not wait for it.

    With ``tls`` the nodes serve TLS only, with mutual TLS between them.
    """
    servers = []
    for spec in specs:
        node = LocalNode(root.resolve(), spec.port)
        reset(node)
        with open(node.log_file, "a") as log:
            log.write(f"=== clusterctl up: starting {spec.address} at {time.ctime()} ===\n")
        server = ServerProcess(
            node.dir,
            port=spec.port,
            bus_port=spec.bus_port,
            cluster=True,
            log_path=node.log_file,
            # A restarted node (rolling-restart) comes back with its keys.
            extra_args=["--node-timeout", str(node_timeout_ms), "--snapshot", "on-shutdown"],
            tls=tls,
        )
        server.spawn()
        node.pid_file.write_text(f"{server.pid}\n")
        servers.append(server)
    return servers


def wait_ready(servers: Sequence[ServerProcess], timeout: float) -> None:
    """Wait until every server serves; raise with the log of the first that does not."""
    deadline = time.monotonic() + timeout
    for server in servers:
        if not server.wait_ready(max(0.1, deadline - time.monotonic())):
            log = server.log()[-_LOG_TAIL_CHARS:]
            raise OperationError(
                f"the node on {server.address} did not start within {timeout:.0f}s; "
                f"the end of {server.log_path}:\n{log}"
            )


# ---- stopping -------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    """The process still runs (a zombie does not count; our own children are reaped here)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().rpartition(")")[2].split()[0] != "Z"
    return True


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pids: Iterable[int], timeout: float) -> set[int]:
    """Poll until the processes have exited; return the pids still alive at ``timeout``."""
    left = set(pids)
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        left = {pid for pid in left if alive(pid)}
        if left:
            time.sleep(_POLL_S)
    return {pid for pid in left if alive(pid)}


@dataclass(frozen=True)
class Stopped:
    """How one server ended."""

    node: LocalNode
    pid: int
    # "stopped" (exited on SIGTERM), "killed" (needed SIGKILL) or "survived" (still running).
    outcome: str


def stop(running: Mapping[int, LocalNode], timeout: float) -> list[Stopped]:
    """SIGTERM every server, wait up to ``timeout``, SIGKILL the rest; remove their pid files.

    All are signalled at once, so stopping N nodes takes one grace period,
    not N. SIGCONT follows SIGTERM so a suspended (SIGSTOPped) node acts on it.
    """
    for pid in running:
        _signal(pid, signal.SIGTERM)
        _signal(pid, signal.SIGCONT)
    stubborn = _wait_gone(running, timeout)
    for pid in stubborn:
        _signal(pid, signal.SIGKILL)
    survivors = _wait_gone(stubborn, 5.0)
    results = []
    for pid, node in sorted(running.items(), key=lambda item: item[1].port):
        if pid in survivors:
            outcome = "survived"
        else:
            outcome = "killed" if pid in stubborn else "stopped"
            if node.read_pid() == pid:
                node.pid_file.unlink(missing_ok=True)
        results.append(Stopped(node, pid, outcome))
    return results
