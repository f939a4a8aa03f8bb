"""``clusterctl``: inspect and operate slotcache clusters.

This module is only the command line: it parses, dispatches, and turns
failures into exit statuses (0 success, 1 an operation failed, 2 bad usage,
128+N interrupted by signal N). The commands live in ``cluster_commands``
(talking to running nodes), ``replica_commands`` (add-node and failover) and
``local_commands`` (local processes).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from slotcache.ctl import args as types
from slotcache.ctl import cluster_commands, local_commands, output, replica_commands
from slotcache.ctl.args import UsageError
from slotcache.ctl.cluster_ops import OperationError
from slotcache.ctl.failover import Mode
from slotcache.ctl.local import MAX_NODES
from slotcache.ctl.local_commands import Interrupted

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_CREATE_WAIT_S = 30.0
DEFAULT_ADD_WAIT_S = 60.0
# A graceful failover gives up after 5 s on the server; 10 s leaves room for the votes.
DEFAULT_FAILOVER_TIMEOUT_S = 10.0


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
    _add_replicas(up, default=1)
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


def _add_replicas(cmd: argparse.ArgumentParser, default: int) -> None:
    cmd.add_argument(
        "--replicas",
        type=types.int_in(0, MAX_NODES - 1, "--replicas"),
        default=default,
        metavar="R",
        help=f"replicas per primary (default {default})",
    )


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


def _add_add_node(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser(
        "add-node",
        parents=[_common()],
        help="add an empty node to a cluster, as a primary without slots or as a replica",
        description="Introduce the fresh, empty cluster-mode node NEW to the cluster that "
        "EXISTING belongs to, and wait until every node knows it. Without --replica-of it "
        "stays a primary without slots; with it, it replicates that primary and the command "
        "also waits until it is in sync. Refuses, changing nothing, a NEW that is in a "
        "cluster or holds data, and an id that is unknown, ambiguous or not a primary.",
    )
    cmd.add_argument("new", type=types.address, metavar="NEW", help="the new node's HOST:PORT")
    cmd.add_argument(
        "existing", type=types.address, metavar="EXISTING", help="HOST:PORT of any cluster node"
    )
    cmd.add_argument(
        "--replica-of",
        type=types.node_id,
        metavar="NODE_ID",
        help="make NEW a replica of this primary (its id, or a unique prefix as nodes shows it)",
    )
    cmd.add_argument(
        "--wait",
        type=types.positive_seconds,
        default=DEFAULT_ADD_WAIT_S,
        metavar="SECS",
        help="how long to wait for the cluster to know the node, and again for a replica's "
        f"sync (default {DEFAULT_ADD_WAIT_S:g})",
    )
    cmd.set_defaults(func=replica_commands.cmd_add_node)


def _add_failover(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser(
        "failover",
        help="promote a replica to primary in place of its primary",
        description="Manual failover. By default graceful: the primary pauses writes until "
        "the replica has every one, so nothing is lost. The old primary becomes a replica "
        "of the new one.",
    )
    cmd.add_argument(
        "address", type=types.address, metavar="REPLICA", help="HOST:PORT of the replica"
    )
    mode = cmd.add_mutually_exclusive_group()
    mode.add_argument(
        "--force",
        action="store_const",
        dest="mode",
        const=Mode.FORCE,
        default=Mode.GRACEFUL,
        help="do not wait for the primary (use when it is down); still needs a majority's votes",
    )
    mode.add_argument(
        "--takeover",
        action="store_const",
        dest="mode",
        const=Mode.TAKEOVER,
        help="take the slots without any vote (use when no majority can be reached); "
        "writes the primary took that the replica lacks are lost",
    )
    cmd.add_argument(
        "--timeout",
        type=types.positive_seconds,
        default=DEFAULT_FAILOVER_TIMEOUT_S,
        metavar="SECS",
        help=f"how long to wait for the promotion (default {DEFAULT_FAILOVER_TIMEOUT_S:g})",
    )
    cmd.add_argument("--json", action="store_true", help="print JSON for scripts")
    cmd.set_defaults(func=replica_commands.cmd_failover)


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
        description="Split the 16384 slots evenly over the primaries and have every node meet. "
        "With --replicas R, the first N/(R+1) nodes (in order) are the primaries and the "
        "others replicate them round-robin. Refuses, changing nothing, if a node is down, "
        "not in cluster mode, or already in a cluster.",
    )
    _add_replicas(create, default=0)
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
    _add_add_node(sub)
    _add_failover(sub)

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
