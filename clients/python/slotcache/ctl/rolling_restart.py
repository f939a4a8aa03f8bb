"""``clusterctl rolling-restart``: restart a local cluster one node at a time, replicas first.

This is the order a Kubernetes StatefulSet's rolling update gives when the
replicas have the higher ordinals. Each node's replacement is started
first, with the same command line and ``--takeover-pid`` (it imports, then
waits for the old process to exit before it loads and binds); the node is
then stopped with SIGTERM (a primary hands its slots to an in-sync replica
first, see the server's ``--shutdown-failover``), and the next node waits
until ``clusterctl check`` finds neither problems nor replicas out of sync:
restarting a primary whose replica is still syncing would leave its slots
without an up-to-date copy.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from slotcache.ctl import local, output
from slotcache.ctl.cluster_commands import examine
from slotcache.ctl.cluster_ops import OperationError, myself, poll_until
from slotcache.ctl.launcher import ServerProcess
from slotcache.ctl.views import role_name
from slotcache.ctl.wording import counted
from slotcache.v1 import admin_pb2

READY_TIMEOUT_S = 60.0
# Flags the launcher sets itself from the node's ports and folder.
_LAUNCHER_FLAGS = {
    "--host",
    "--port",
    "--data-dir",
    "--cluster-enabled",
    "--bus-port",
    "--takeover-pid",
}


@dataclass(frozen=True)
class Target:
    """One running node of the folder, as found before the restart began."""

    pid: int
    node: local.LocalNode
    role: str
    args: tuple[str, ...]


def restart_order(targets: Iterable[Target]) -> list[Target]:
    """Replicas first, then primaries; by port within each group."""
    return sorted(targets, key=lambda t: (t.role != "replica", t.node.port))


def server_flags(cmdline: Sequence[str]) -> tuple[int, list[str]]:
    """From a running server's command line: its bus port and the flags to start it with again.

    The launcher adds the host, ports, folder and cluster mode itself; every
    other flag (node timeout, snapshot policy, TLS, ...) is kept as it was. A
    TLS-only node (``--port 0``, its client port being ``--tls-port``) stays
    TLS only: the ``--port 0`` after the launcher's ``--port`` wins.
    """
    start = next((i for i, a in enumerate(cmdline) if a.startswith("--")), len(cmdline))
    flags = list(cmdline[start:])
    values = dict(itertools.pairwise(flags))
    if "--bus-port" not in values:
        raise OperationError(f"cannot restart a server started without --bus-port: {cmdline}")
    extra: list[str] = []
    rest = iter(flags)
    for flag in rest:
        if flag in _LAUNCHER_FLAGS:
            next(rest, None)  # its value
        else:
            extra.append(flag)
    if values.get("--port") == "0":
        extra += ["--port", "0"]
    return int(values["--bus-port"]), extra


def _roles(states: Mapping[str, admin_pb2.ClusterStateReply | OperationError]) -> dict[str, str]:
    """Address -> ``primary`` or ``replica``, from each node's own view."""
    return {
        address: role_name(myself(state).node)
        for address, state in states.items()
        if isinstance(state, admin_pb2.ClusterStateReply)
    }


def find_targets(root: Path, timeout: float) -> list[Target]:
    """Every node running from ``root`` with its role, in restart order."""
    found = local.discover(root)
    if not found.running:
        raise OperationError(f"nothing is running from {root}; start a cluster with clusterctl up")
    seed = min(found.running.values(), key=lambda n: n.port).address
    roles = _roles(examine(seed, timeout).states)
    targets = []
    for pid, node in found.running.items():
        cmdline = local.command_line(pid)
        if cmdline is None:
            raise OperationError(f"the node on {node.address} (pid {pid}) exited meanwhile")
        targets.append(Target(pid, node, roles.get(node.address, "primary"), tuple(cmdline)))
    return restart_order(targets)


def wait_healthy(seed: str, timeout: float, wait_s: float, progress: Callable[[str], None]) -> None:
    """Wait until ``check`` from ``seed`` finds no problem and no replica out of sync."""

    def pending() -> str | None:
        try:
            findings = examine(seed, timeout)
        except OperationError as exc:
            return str(exc)
        remaining = findings.problems + findings.warnings
        return remaining[0] if remaining else None

    awaited = poll_until(pending, wait_s, progress)
    if awaited is not None:
        raise OperationError(f"the cluster did not pass check within {wait_s:g}s: {awaited}")


@dataclass(frozen=True)
class Restarted:
    """How one node's restart went."""

    address: str
    role: str
    old_pid: int
    new_pid: int
    # When SIGTERM was sent and when check passed again (time.monotonic()).
    began: float
    ended: float
    # From SIGTERM until the new process served, and from then until check passed.
    down_s: float
    settled_s: float
    # From spawning the replacement until SIGTERM (it had stood by, and the
    # previous node's check had passed).
    standby_s: float


def spawn_replacement(target: Target) -> ServerProcess:
    """Start the node's replacement: the same flags plus ``--takeover-pid``.

    It does its imports (most of a start) while the node still serves, then
    stands by; only then is the node stopped (:func:`replace`), and the
    replacement loads the snapshot and binds as soon as the old process has
    exited. The node is away for the old process's last steps and the new
    one's load, not for a whole interpreter start.
    """
    node = target.node
    bus_port, extra = server_flags(target.args)
    with open(node.log_file, "a") as log:
        log.write(
            f"=== clusterctl rolling-restart: starting the replacement of pid {target.pid} "
            f"on {node.address} at {time.ctime()} ===\n"
        )
    server = ServerProcess(
        node.dir,
        port=node.port,
        bus_port=bus_port,
        cluster=True,
        log_path=node.log_file,
        extra_args=[*extra, "--takeover-pid", str(target.pid)],
    )
    server.spawn()
    return server


def replace(target: Target, server: ServerProcess, stop_timeout: float) -> tuple[float, float]:
    """Stop the node once its replacement stands by; (SIGTERM sent, replacement serving).

    Times are ``time.monotonic()``. On failure the replacement is killed: one
    left standing by would take the node over whenever it stops.
    """
    node = target.node
    try:
        if not server.wait_standing_by(READY_TIMEOUT_S):
            raise OperationError(
                f"the replacement for {node.address} did not start within "
                f"{READY_TIMEOUT_S:g}s; see {node.log_file}"
            )
        stopping = time.monotonic()
        stopped = local.stop({target.pid: node}, stop_timeout)
        if stopped[0].outcome == "survived":
            raise OperationError(f"could not stop the node on {node.address} (pid {target.pid})")
        node.pid_file.write_text(f"{server.pid}\n")
        if not server.wait_ready(READY_TIMEOUT_S):
            raise OperationError(
                f"the node on {node.address} did not come back within {READY_TIMEOUT_S:g}s; "
                f"see {node.log_file}"
            )
    except OperationError:
        server.kill()
        raise
    return stopping, time.monotonic()


def rolling_restart(
    root: Path, timeout: float, wait_s: float, stop_timeout: float
) -> list[Restarted]:
    """Restart every node of the local cluster in ``root``, one at a time.

    Each node's replacement is spawned while the previous node's restart
    settles (``check``), so its imports overlap that wait; it touches
    nothing until the node it replaces is stopped.
    """
    targets = find_targets(root, timeout)
    seed = targets[0].node.address
    spawned = time.monotonic()
    pending: ServerProcess | None = spawn_replacement(targets[0])
    done = []
    try:
        with output.progress("checking the cluster before the first restart") as progress:
            wait_healthy(seed, timeout, wait_s, progress)
        for i, target in enumerate(targets, 1):
            address = target.node.address
            label = f"[{i}/{len(targets)}] {address} ({target.role})"
            with output.progress(f"{label}: restarting") as progress:
                server, pending = pending, None
                assert server is not None
                stopping, back = replace(target, server, stop_timeout)
                next_spawned = time.monotonic()
                if i < len(targets):
                    pending = spawn_replacement(targets[i])
                wait_healthy(address, timeout, wait_s, progress)
            ended = time.monotonic()
            result = Restarted(
                address,
                target.role,
                target.pid,
                server.pid,
                began=stopping,
                ended=ended,
                down_s=back - stopping,
                settled_s=ended - back,
                standby_s=stopping - spawned,
            )
            spawned = next_spawned
            done.append(result)
            output.errors.print(
                f"{label}: replacement ready in {result.standby_s:.1f}s, back "
                f"{result.down_s:.1f}s after SIGTERM, check passed {result.settled_s:.1f}s later",
                highlight=False,
            )
    finally:
        if pending is not None:
            # Never leave a replacement standing by: it would take its node over later.
            pending.kill()
    return done


def cmd_rolling_restart(args: argparse.Namespace) -> int:
    """Restart the local cluster in ``--dir`` node by node, replicas first."""
    root = Path(args.dir)
    done = rolling_restart(root, args.timeout, args.wait, args.stop_timeout)
    if args.json:
        output.emit_json(
            {
                "dir": str(root.resolve()),
                "restarted": [
                    {
                        "address": r.address,
                        "role": r.role,
                        "old_pid": r.old_pid,
                        "new_pid": r.new_pid,
                        "down_s": round(r.down_s, 3),
                        "settled_s": round(r.settled_s, 3),
                        "standby_s": round(r.standby_s, 3),
                    }
                    for r in done
                ],
            }
        )
    else:
        restarted = counted(len(done), "node")
        output.console.print(
            f"[green]restarted {restarted}[/green] one at a time; the cluster passes check",
            highlight=False,
        )
    return 0
