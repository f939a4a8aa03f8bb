"""``clusterctl``: inspect and operate slotcache clusters.

This module is only the command line: it parses, dispatches, and turns
failures into exit statuses (0 success, 1 an operation failed, 2 bad usage,
128+N interrupted by signal N). The commands live in ``cluster_commands``
(talking to running nodes) and ``local_commands`` (local processes).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from slotcache.ctl import args as types
from slotcache.ctl import cluster_commands, local_commands, output
from slotcache.ctl.args import UsageError
from slotcache.ctl.cluster_ops import OperationError
from slotcache.ctl.local import MAX_NODES
from slotcache.ctl.local_commands import Interrupted

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_CREATE_WAIT_S = 30.0


def _common(json_help: str = "print JSON for scripts") -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--timeout",
        type=types.positive_seconds,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECS",
        help=f"seconds to wait for each RPC (default {DEFAULT_TIMEOUT_S:g})",
    )
    common.add_argument("--json", action="store_true", help=json_help)
    return common


def _add_node_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    func: Callable[[argparse.Namespace], int],
) -> argparse.ArgumentParser:
    description = f"{help_text[0].upper()}{help_text[1:]}."
    cmd = sub.add_parser(name, parents=[_common()], help=help_text, description=description)
    cmd.add_argument("address", type=types.address, metavar="HOST:PORT", help="any node's address")
    cmd.set_defaults(func=func)
    return cmd


def _add_up(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser(
        "up",
        parents=[_common()],
        help="start a local cluster on 127.0.0.1",
        description="Start a local cluster on 127.0.0.1: one background server per node, "
        "files in --dir, then form the cluster and print how to connect.",
    )
    up.add_argument(
        "--primaries",
        type=types.int_in(1, MAX_NODES, "--primaries"),
        default=3,
        metavar="N",
        help="number of primaries (default 3)",
    )
    up.add_argument(
        "--replicas",
        type=types.int_in(0, MAX_NODES, "--replicas"),
        default=0,
        metavar="R",
        help="replicas per primary; only 0 until replication is available (default 0)",
    )
    up.add_argument(
        "--node-timeout-ms",
        type=types.int_in(50, 3_600_000, "--node-timeout-ms"),
        default=local_commands.DEFAULT_NODE_TIMEOUT_MS,
        metavar="MS",
        help="failure detection timeout "
        f"(default {local_commands.DEFAULT_NODE_TIMEOUT_MS}; the server's own default is 15000)",
    )
    up.add_argument(
        "--base-port",
        type=types.port,
        default=local_commands.DEFAULT_BASE_PORT,
        metavar="PORT",
        help="client port of the first node; the others follow (default 7000)",
    )
    up.add_argument(
        "--bus-port-offset",
        type=types.int_in(1, 65534, "--bus-port-offset"),
        default=local_commands.DEFAULT_BUS_PORT_OFFSET,
        metavar="N",
        help="bus port = client port + N (default 10000, as in Redis Cluster)",
    )
    _add_dir(up)
    up.add_argument(
        "--foreground",
        action="store_true",
        help="stay attached; Ctrl-C or SIGTERM stops the cluster",
    )
    up.set_defaults(func=local_commands.cmd_up)


def _add_dir(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--dir",
        default=local_commands.DEFAULT_DIR,
        metavar="DIR",
        help=f"folder for node data, pid and log files (default {local_commands.DEFAULT_DIR})",
    )
    cmd.add_argument(
        "--stop-timeout",
        type=types.positive_seconds,
        default=local_commands.DEFAULT_STOP_TIMEOUT_S,
        metavar="SECS",
        help="seconds to wait after SIGTERM before SIGKILL (default "
        f"{local_commands.DEFAULT_STOP_TIMEOUT_S:g})",
    )


def build_parser() -> argparse.ArgumentParser:
    """The clusterctl command line."""
    parser = argparse.ArgumentParser(
        prog="clusterctl", description="Inspect and operate slotcache clusters."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_up(sub)
    down = sub.add_parser(
        "down",
        help="stop the local cluster started from --dir",
        description="Stop every server running from --dir: SIGTERM, wait, then SIGKILL.",
    )
    _add_dir(down)
    down.add_argument("--json", action="store_true", help="print JSON for scripts")
    down.set_defaults(func=local_commands.cmd_down)

    create = sub.add_parser(
        "create",
        parents=[_common()],
        help="form a cluster of empty nodes",
        description="Split the 16384 slots evenly over the given nodes (in order) and have "
        "them all meet. Refuses, changing nothing, if a node is down, not in cluster "
        "mode, or already in a cluster.",
    )
    create.add_argument(
        "addresses", nargs="+", type=types.address, metavar="HOST:PORT", help="the nodes"
    )
    create.add_argument(
        "--wait",
        type=types.positive_seconds,
        default=DEFAULT_CREATE_WAIT_S,
        metavar="SECS",
        help=f"how long to wait for every node to agree (default {DEFAULT_CREATE_WAIT_S:g})",
    )
    create.set_defaults(func=cluster_commands.cmd_create)

    _add_node_command(sub, "info", "show a node's identity and counters", cluster_commands.cmd_info)
    _add_node_command(
        sub,
        "nodes",
        "show every node in a node's view: roles, flags, epochs, slots, liveness",
        cluster_commands.cmd_nodes,
    )
    slots = _add_node_command(
        sub,
        "slots",
        "show which node owns which slots in a node's view",
        cluster_commands.cmd_slots,
    )
    slots.add_argument(
        "--slot", type=types.slot, metavar="SLOT", help="show only the owner of this slot (0-16383)"
    )
    _add_node_command(
        sub,
        "check",
        "check that every slot is covered and every node agrees (exit 1 if not)",
        cluster_commands.cmd_check,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; see the module docstring for the exit statuses."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 after a usage error, 0 after --help
        return exc.code if isinstance(exc.code, int) else 2
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UsageError as exc:
        # The same shape as argparse's own usage errors, which also exit 2.
        output.errors.print(
            f"clusterctl {args.command}: error: {exc} (see clusterctl {args.command} --help)",
            highlight=False,
            markup=False,
        )
        return 2
    except OperationError as exc:
        output.error(str(exc))
        return 1
    except KeyboardInterrupt:
        output.error("interrupted")
        return 130
    except Interrupted as exc:
        output.error(f"stopped by {exc}")
        return 128 + exc.signum


if __name__ == "__main__":
    sys.exit(main())
