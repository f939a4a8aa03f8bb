"""``clusterctl up`` and ``clusterctl down``: a local cluster for development, in one folder.

``up`` either leaves the cluster running in the background, or with
``--foreground`` stays attached and brings it down on Ctrl-C or SIGTERM
(what ``make run`` uses). Whatever goes wrong while starting, every process
it started is stopped again before it reports the error: a half-started
cluster would hold ports and confuse the next ``up``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from rich.syntax import Syntax

from slotcache.ctl import local, output, transport
from slotcache.ctl.args import UsageError
from slotcache.ctl.certs import generate_local
from slotcache.ctl.cluster_ops import OperationError, create_cluster
from slotcache.ctl.connect_info import command_for, connect_info, down_command
from slotcache.ctl.launcher import ServerProcess
from slotcache.ctl.views import created_entries, format_ranges, role_cell, short_id
from slotcache.ctl.wording import counted

DEFAULT_DIR = ".cluster"
DEFAULT_BASE_PORT = 7000
DEFAULT_BUS_PORT_OFFSET = 10000
# The server's default (15 s) suits real networks. On one machine a peer answers within
# milliseconds, and a shorter timeout makes failure detection visible in a demo, while
# 5 s still rides out a laptop's scheduling hiccups and a paused debugger step.
DEFAULT_NODE_TIMEOUT_MS = 5000
DEFAULT_STOP_TIMEOUT_S = 10.0
# Where up --tls writes its certificates, inside the cluster folder.
TLS_FOLDER = "tls"
READY_TIMEOUT_S = 30.0
AGREE_TIMEOUT_S = 60.0
_WATCH_S = 0.2
# grpcurl is not packaged by Debian or Ubuntu; its README lists these two routes.
GRPCURL_HINT = (
    "to install it: go install github.com/fullstorydev/grpcurl/cmd/grpcurl@latest, "
    "or a release binary from https://github.com/fullstorydev/grpcurl/releases"
)


class Interrupted(Exception):
    """A termination signal arrived; the entry point exits with 128 + its number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def _signals(handler: Any) -> Iterator[None]:
    """Handle SIGTERM and SIGHUP with ``handler`` while inside, and SIGINT as Ctrl-C.

    SIGINT gets Python's KeyboardInterrupt handler, set explicitly: a process
    started in the background by a script (``make run &``) inherits SIGINT as
    ignored, and Python then leaves it ignored, so ``up --foreground`` would
    never stop on it. With ``SIG_IGN`` all three are ignored.
    """
    sigint = signal.SIG_IGN if handler is signal.SIG_IGN else signal.default_int_handler
    handlers = {signal.SIGTERM: handler, signal.SIGHUP: handler, signal.SIGINT: sigint}
    previous = {sig: signal.signal(sig, wanted) for sig, wanted in handlers.items()}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _stop_all(root: Path, timeout: float) -> list[local.Stopped]:
    """Stop everything running from ``root``, shielded from further Ctrl-C and SIGTERM.

    A second Ctrl-C during the shutdown would otherwise abandon the nodes
    half-way; the wait is bounded by ``timeout`` plus the SIGKILL grace.
    """
    with _signals(signal.SIG_IGN):
        return local.stop(local.discover(root).running, timeout)


def typed(name: str) -> str:
    """How to type the program ``name`` installed next to this Python (``.venv/bin/...``)."""
    program = Path(sys.executable).parent / name
    if not program.exists():
        return name
    found = shutil.which(name)
    return command_for(
        os.path.abspath(program), name, os.path.abspath(found) if found else None, os.getcwd()
    )


def cmd_up(args: argparse.Namespace) -> int:
    """Start a local cluster in the background (or attached), form it, and say how to use it."""
    count = args.primaries * (args.replicas + 1)
    if count > local.MAX_NODES:
        raise UsageError(
            f"--primaries {args.primaries} with --replicas {args.replicas} makes {count} nodes; "
            f"a local cluster has at most {local.MAX_NODES}"
        )
    try:
        specs = local.plan(count, args.base_port, args.bus_port_offset)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    root = Path(args.dir)
    found = local.discover(root)
    if found.running:
        listed = ", ".join(
            f"{n.address} (pid {pid})"
            for pid, n in sorted(found.running.items(), key=lambda i: i[1].port)
        )
        raise OperationError(
            f"a cluster is already running from {args.dir}: {listed}; "
            f"stop it first with: {down_command(args.dir, DEFAULT_DIR, typed('clusterctl'))}"
        )
    ports = [p for s in specs for p in (s.port, s.bus_port)]
    busy = local.busy_ports(ports)
    if busy:
        raise OperationError(
            f"port(s) {', '.join(map(str, busy))} on {local.HOST} are already in use; "
            "pick free ones with --base-port (bus ports are --bus-port-offset higher)"
        )
    with _signals(_raise_interrupted):
        try:
            servers = _start(root, specs, args)
        except BaseException:
            output.errors.print("stopping the nodes started so far", highlight=False)
            _stop_all(root, args.stop_timeout)
            raise
        if not args.foreground:
            return 0
        try:
            _watch(servers)
        except (KeyboardInterrupt, Interrupted) as exc:
            name = "Ctrl-C" if isinstance(exc, KeyboardInterrupt) else str(exc)
            output.errors.print(f"{name}: stopping the cluster", highlight=False)
        finally:
            stopped = _stop_all(root, args.stop_timeout)
            output.errors.print(
                f"stopped {counted(sum(s.outcome != 'survived' for s in stopped), 'node')}",
                highlight=False,
            )
    return 0


def _start(
    root: Path, specs: Sequence[local.NodeSpec], args: argparse.Namespace
) -> list[ServerProcess]:
    """Start the nodes, form the cluster, wait until it is ok, and print how to connect."""
    certs = None
    if args.tls:
        # Throwaway: a new CA on every up, trusted by nothing but this cluster.
        certs = generate_local(root.resolve() / TLS_FOLDER)
        transport.use_tls(certs.client_options())
    with output.progress(f"starting {counted(len(specs), 'node')} in {args.dir}"):
        servers = local.spawn(root, specs, args.node_timeout_ms, certs)
        local.wait_ready(servers, READY_TIMEOUT_S)
    with output.progress("forming the cluster and waiting until every node agrees") as progress:
        created = create_cluster(
            [s.address for s in specs],
            replicas=args.replicas,
            timeout=args.timeout,
            wait_s=AGREE_TIMEOUT_S,
            progress=progress,
        )
    nodes = [
        {
            **entry,
            "bus_address": spec.bus_address,
            "pid": server.pid,
            "data_dir": str(server.data_dir),
            "log": str(server.log_path),
        }
        for spec, server, entry in zip(specs, servers, created_entries(created), strict=True)
    ]
    python = Path(sys.executable)
    info = connect_info(
        [s.address for s in specs],
        args.dir,
        DEFAULT_DIR,
        ctl=typed("clusterctl"),
        python=typed(python.name),
        tls=None if certs is None else certs.client_files(Path.cwd()),
    )
    if args.json:
        output.emit_json(
            {
                "dir": str(root.resolve()),
                "node_timeout_ms": args.node_timeout_ms,
                "tls": certs is not None,
                "foreground": args.foreground,
                "nodes": nodes,
                "connect": info,
            }
        )
    else:
        _print_up(nodes, info, args)
    return servers


def _print_up(
    nodes: Sequence[dict[str, Any]], info: dict[str, Any], args: argparse.Namespace
) -> None:
    console = output.console
    console.print(
        f"[green]cluster is up[/green]: {_shape(args.primaries, args.replicas)} on {local.HOST}, "
        f"node timeout {args.node_timeout_ms} ms, files in {args.dir}",
        highlight=False,
    )
    rows = [
        [
            n["address"],
            n["bus_address"],
            short_id(n["id"]),
            role_cell(n),
            format_ranges([tuple(r) for r in n["slots"]]),
            str(n["pid"]),
            os.path.relpath(n["log"]),
        ]
        for n in nodes
    ]
    columns = ("address", "bus", "id", "role", "slots", "pid", "log")
    console.print(output.rows_table("nodes", columns, rows))
    console.print(
        f"\nConnect from Python ({info['python_command']}; any node serves any key, "
        "forwarding it to the owner):",
        highlight=False,
        markup=False,
    )
    console.print(Syntax(info["python"], "python", background_color="default"))
    if "tls_env" in info:
        console.print(
            "TLS is on (client port and cluster bus, mutual TLS); clusterctl needs the "
            "client certificate, from these variables or --tls-ca, --tls-cert, --tls-key:",
            highlight=False,
        )
        console.print(f"  {info['tls_env']}", highlight=False, markup=False)
    console.print("Or with clusterctl (it finds the key's node):", highlight=False)
    for command in info["clusterctl"]:
        console.print(f"  {command}", highlight=False, markup=False)
    console.print(f"Or with grpcurl (bytes are base64 in JSON; {GRPCURL_HINT}):", highlight=False)
    for command in info["grpcurl"]:
        console.print(f"  {command}", highlight=False, markup=False)
    console.print("Inspect:", highlight=False)
    for command in info["inspect"]:
        console.print(f"  {command}", highlight=False, markup=False)
    stop = "press Ctrl-C" if args.foreground else info["stop"]
    console.print(f"Stop: {stop}", highlight=False, markup=False)


def _shape(primaries: int, replicas: int) -> str:
    """``3 primaries with 1 replica each (6 nodes)``."""
    shape = counted(primaries, "primary", "primaries")
    if replicas:
        shape += f" with {counted(replicas, 'replica')} each ({primaries * (replicas + 1)} nodes)"
    return shape


def _watch(servers: Sequence[ServerProcess]) -> None:
    """Stay attached until interrupted; report nodes that exit on their own.

    The cluster keeps running when one node dies (that is what the cluster
    is for), but with no node left there is nothing to wait for.
    """
    reported: set[int] = set()
    while True:
        for server in servers:
            code = server.proc.poll() if server.proc is not None else 0
            if code is not None and server.pid not in reported:
                reported.add(server.pid)
                output.warning(
                    f"the node on {server.address} exited with status {code}; see {server.log_path}"
                )
        if len(reported) == len(servers):
            raise OperationError("every node has exited")
        time.sleep(_WATCH_S)


def cmd_down(args: argparse.Namespace) -> int:
    """Stop every server running from the folder: SIGTERM, wait, then SIGKILL."""
    root = Path(args.dir)
    found = local.discover(root)
    for node in found.stale:
        output.warning(f"removed a stale pid file for {node.address} (that process is gone)")
    if not found.running:
        if args.json:
            output.emit_json({"dir": str(root.resolve()), "stopped": []})
        else:
            output.console.print(f"nothing is running from {args.dir}", highlight=False)
        return 0
    with output.progress(f"stopping {counted(len(found.running), 'node')}"):
        stopped = _stop_all(root, args.stop_timeout)
    if args.json:
        output.emit_json(
            {
                "dir": str(root.resolve()),
                "stopped": [
                    {"address": s.node.address, "pid": s.pid, "outcome": s.outcome} for s in stopped
                ],
            }
        )
    else:
        for s in stopped:
            how = {
                "stopped": "stopped",
                "killed": f"killed (it did not exit within {args.stop_timeout:g}s of SIGTERM)",
                "survived": "STILL RUNNING (even SIGKILL failed)",
            }[s.outcome]
            output.console.print(f"{s.node.address} (pid {s.pid}): {how}", highlight=False)
    survivors = [s for s in stopped if s.outcome == "survived"]
    if survivors:
        raise OperationError("could not stop pid(s) " + ", ".join(str(s.pid) for s in survivors))
    return 0
