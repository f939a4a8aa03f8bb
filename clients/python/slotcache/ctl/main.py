"""``clusterctl``: inspect and operate slotcache clusters.

This module is only the command line: it parses, dispatches, and turns
failures into exit statuses (0 success, 1 an operation failed or a key was
not found, 2 bad usage, 128+N interrupted by signal N). The commands live in
``cluster_commands`` (talking to running nodes), ``replica_commands``
(add-node and failover), ``reshard_commands`` (moving slots),
``local_commands`` (local processes) and ``key_commands`` (one key).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from slotcache.contract import SLOT_COUNT
from slotcache.ctl import (
    acl_commands,
    auth,
    bootstrap,
    cluster_commands,
    local_commands,
    observe_commands,
    output,
    replica_commands,
    reshard_commands,
    rolling_restart,
    transport,
)
from slotcache.ctl import args as types
from slotcache.ctl.args import UsageError
from slotcache.ctl.cluster_ops import OperationError
from slotcache.ctl.failover import Mode
from slotcache.ctl.formation import JoinPolicy
from slotcache.ctl.key_commands import cmd_del, cmd_get, cmd_set, cmd_ttl
from slotcache.ctl.local import MAX_NODES
from slotcache.ctl.local_commands import Interrupted
from slotcache.ctl.rebalance_plan import DEFAULT_THRESHOLD_PCT, UNITS
from slotcache.ctl.resharding import DEFAULT_BATCH_KEYS, DEFAULT_BATCH_SLOTS, DEFAULT_PARALLEL

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_CREATE_WAIT_S = 30.0
DEFAULT_ADD_WAIT_S = 60.0
# A graceful failover gives up after 5 s on the server; 10 s leaves room for the votes.
DEFAULT_FAILOVER_TIMEOUT_S = 10.0
# How long reshard and rebalance wait for every node to agree after the last batch.
DEFAULT_CONVERGE_WAIT_S = 30.0
DEFAULT_DEL_WAIT_S = 30.0
DEFAULT_FIX_WAIT_S = 30.0
DEFAULT_ROLLING_WAIT_S = 60.0
DEFAULT_TOP_INTERVAL_S = 1.0


def _add_seconds(cmd: argparse.ArgumentParser, flag: str, default: float, what: str) -> None:
    """A ``SECS`` option (``--timeout``, ``--wait``), with its default in the help."""
    cmd.add_argument(
        flag,
        type=types.positive_seconds,
        default=default,
        metavar="SECS",
        help=f"{what} (default {default:g})",
    )


def _common(json_help: str = "print JSON for scripts") -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _add_seconds(common, "--timeout", DEFAULT_TIMEOUT_S, "seconds to wait for each RPC")
    common.add_argument("--json", action="store_true", help=json_help)
    auth.add_options(common)
    _add_tls(common)
    return common


def _add_tls(cmd: argparse.ArgumentParser) -> None:
    """``--tls-ca``, ``--tls-cert``, ``--tls-key``: TLS for every connection the command makes."""
    flags = (
        ("--tls-ca", transport.ENV_CA, "CA certificate the nodes' certificates are checked with"),
        ("--tls-cert", transport.ENV_CERT, "client certificate, for nodes that require one"),
        ("--tls-key", transport.ENV_KEY, "the client certificate's private key"),
    )
    for flag, env, what in flags:
        cmd.add_argument(
            flag,
            default=os.environ.get(env),
            metavar="PATH",
            help=f"{what}; connect over TLS (env {env})",
        )


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
        "--tls",
        action="store_true",
        help="generate a throwaway CA and certificates into DIR/tls and run the nodes with "
        "TLS only (mutual TLS on client ports and between nodes)",
    )
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


def _add_wait(cmd: argparse.ArgumentParser, default: float, what: str) -> None:
    """``--wait SECS``: how long a command waits for the cluster."""
    _add_seconds(cmd, "--wait", default, what)


def _add_rolling_restart(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser(
        "rolling-restart",
        parents=[_common()],
        help="restart the local cluster from --dir one node at a time, replicas first",
        description="Restart every node of the cluster started by clusterctl up, one at a "
        "time: replicas first, then primaries (each hands its slots to an in-sync replica "
        "before it stops). Before each node, waits until check finds no problem and every "
        "replica is in sync.",
    )
    _add_dir(cmd)
    _add_wait(
        cmd,
        DEFAULT_ROLLING_WAIT_S,
        "how long to wait for check to pass after each node",
    )
    cmd.set_defaults(func=rolling_restart.cmd_rolling_restart)


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
    _add_wait(
        cmd,
        DEFAULT_ADD_WAIT_S,
        "how long to wait for the cluster to know the node, and again for a replica's sync",
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


def _add_moving_options(cmd: argparse.ArgumentParser) -> None:
    """Options shared by reshard and rebalance."""
    cmd.add_argument(
        "--yes", action="store_true", help="do not ask for confirmation before moving slots"
    )
    cmd.add_argument(
        "--batch-slots",
        type=types.int_in(1, SLOT_COUNT, "--batch-slots"),
        default=DEFAULT_BATCH_SLOTS,
        metavar="N",
        help=f"at most N slots per migration (default {DEFAULT_BATCH_SLOTS}); each migration "
        "is atomic, and Ctrl-C stops between migrations",
    )
    cmd.add_argument(
        "--batch-keys",
        type=types.int_in(1, 10**9, "--batch-keys"),
        default=DEFAULT_BATCH_KEYS,
        metavar="K",
        help="and at most about K keys per migration, as SlotStats counts them "
        f"(default {DEFAULT_BATCH_KEYS:,}; a slot with more keys goes alone)",
    )
    cmd.add_argument(
        "--parallel",
        type=types.int_in(1, 16, "--parallel"),
        default=DEFAULT_PARALLEL,
        metavar="N",
        help=f"migrations in flight at once (default {DEFAULT_PARALLEL})",
    )
    _add_wait(
        cmd,
        DEFAULT_CONVERGE_WAIT_S,
        "how long to wait, at the start and the end, for every node to agree",
    )


def _add_reshard(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser(
        "reshard",
        parents=[_common()],
        help="move N slots to a primary, from one primary or from all the others",
        description="Move --slots N slots to the primary --to, taken from the primary --from "
        "(or several, comma-separated), or with --from all from every other primary in "
        "proportion to the slots it owns. The slots move in atomic migrations of "
        "--batch-slots slots each, with a progress bar; Ctrl-C stops after the migration in "
        "flight (a second Ctrl-C cancels it), leaving every slot with exactly one owner.",
    )
    cmd.add_argument("address", type=types.address, metavar="HOST:PORT", help="any node's address")
    cmd.add_argument(
        "--from",
        dest="sources",
        required=True,
        type=types.node_ids_or_all,
        metavar="ID[,ID...]|all",
        help="the primary (or primaries) to take the slots from, or all",
    )
    cmd.add_argument(
        "--to", required=True, type=types.node_id, metavar="ID", help="the primary to give them to"
    )
    cmd.add_argument(
        "--slots",
        required=True,
        type=types.int_in(1, SLOT_COUNT, "--slots"),
        metavar="N",
        help="how many slots to move",
    )
    _add_moving_options(cmd)
    cmd.set_defaults(func=reshard_commands.cmd_reshard)


def _add_rebalance(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser(
        "rebalance",
        parents=[_common()],
        help="even out slots, keys or memory over the primaries (as redis-cli does)",
        description="Give each primary its share of the slots (or, with --by, of the keys or "
        "memory) in proportion to its weight, moving as few slots as possible. Primaries "
        "within --threshold percent of their share are left alone. Primaries without slots "
        "take part only with --use-empty-primaries. --dry-run prints the plan and changes "
        "nothing.",
    )
    cmd.add_argument("address", type=types.address, metavar="HOST:PORT", help="any node's address")
    cmd.add_argument(
        "--weight",
        action="append",
        type=types.weight,
        metavar="ID=W",
        help="weight of a primary (default 1; 0 empties it); may be repeated",
    )
    cmd.add_argument(
        "--threshold",
        type=types.non_negative_float("--threshold"),
        default=DEFAULT_THRESHOLD_PCT,
        metavar="PCT",
        help="leave primaries within PCT percent of their share alone "
        f"(default {DEFAULT_THRESHOLD_PCT:g})",
    )
    cmd.add_argument(
        "--use-empty-primaries",
        action="store_true",
        help="give slots to primaries that have none (otherwise they are left out)",
    )
    cmd.add_argument(
        "--by",
        choices=UNITS,
        default="slots",
        help="what to even out: slot counts (default), keys, or estimated memory (SlotStats)",
    )
    cmd.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    _add_moving_options(cmd)
    cmd.set_defaults(func=reshard_commands.cmd_rebalance)


def _add_del_node(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser(
        "del-node",
        parents=[_common()],
        help="remove a node that owns no slots from the cluster and stop it",
        description="Remove NODE_ID from the cluster of HOST:PORT: refused while it owns "
        "slots. Its replicas (if it is a primary) are moved to the primary with the fewest "
        "replicas; every other node forgets it; then it is stopped gracefully and its node "
        "file deleted, so if started again it is a new, lone node.",
    )
    cmd.add_argument("address", type=types.address, metavar="HOST:PORT", help="any node's address")
    cmd.add_argument(
        "node_id", type=types.node_id, metavar="NODE_ID", help="the node to remove (or a prefix)"
    )
    _add_wait(
        cmd,
        DEFAULT_DEL_WAIT_S,
        "how long to wait for the node to stop",
    )
    cmd.set_defaults(func=reshard_commands.cmd_del_node)


def _add_fix(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser(
        "fix",
        parents=[_common()],
        help="repair an interrupted state: stuck migrations, slots without an owner",
        description="Cancel migrations that are orphaned (the other side is down or gone) or "
        "stuck, give every slot without an owner to the primary that holds its keys (else "
        "to the primary with the fewest slots), settle slots the views disagree on, wait "
        "until every node agrees, and report what was done. Exit 1 if something is left "
        "that fix cannot repair.",
    )
    cmd.add_argument("address", type=types.address, metavar="HOST:PORT", help="any node's address")
    _add_wait(
        cmd,
        DEFAULT_FIX_WAIT_S,
        "how long running migrations may take to finish, and the nodes to agree",
    )
    cmd.add_argument(
        "--stuck-after",
        type=types.positive_seconds,
        default=5.0,
        metavar="SECS",
        help="cancel a migration that makes no progress for this long (default 5)",
    )
    cmd.set_defaults(func=reshard_commands.cmd_fix)


def _add_key_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """get, set, del and ttl: one key, as redis-cli's GET, SET, DEL and PTTL."""
    commands = (
        ("get", "print a key's value (text, bytes, or the object the SDK stored)", cmd_get),
        ("set", "store VALUE (text, as UTF-8 bytes) under a key", cmd_set),
        ("del", "delete a key", cmd_del),
        ("ttl", "print a key's remaining time to live in milliseconds", cmd_ttl),
    )
    for name, help_text, func in commands:
        cmd = _add_node_command(sub, name, help_text, func)
        cmd.description = (
            f"{cmd.description} Any node will do: the key's owner is found, and redirects "
            "followed, as the Python SDK does."
            + ("" if name == "set" else " Exit status 1 when the key does not exist.")
        )
        cmd.add_argument("key", metavar="KEY", help="the key (text, sent as UTF-8)")
        if name == "set":
            cmd.add_argument("value", metavar="VALUE", help="the value (text, stored as UTF-8)")
            cmd.add_argument(
                "--ttl-ms",
                type=types.int_in(1, 10**15, "--ttl-ms"),
                metavar="MS",
                help="expire the key after MS milliseconds (default: never)",
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
    _add_rolling_restart(sub)

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
    _add_wait(
        create,
        DEFAULT_CREATE_WAIT_S,
        "how long to wait for every node to agree",
    )
    create.set_defaults(func=cluster_commands.cmd_create)
    _add_bootstrap(sub)
    _add_add_node(sub)
    _add_del_node(sub)
    _add_failover(sub)
    _add_reshard(sub)
    _add_rebalance(sub)
    _add_fix(sub)

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
    _add_key_commands(sub)
    _add_observe(sub)
    acl_commands.add_commands(sub, _add_node_command)
    return parser


def _add_bootstrap(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser(
        "bootstrap",
        parents=[_common()],
        help="form and grow the cluster of a StatefulSet's pods (runs beside each pod)",
        description="Every --interval, ask each pod named by --pods for its node's state and "
        "take this pod's part: ordinal 0 creates the cluster once PRIMARIES x (REPLICAS + 1) "
        "pods answer; afterwards the lowest-ordinal member adds fresh pods (as replicas of "
        "primaries short of them, or as empty primaries) and rebalances slots onto empty "
        "primaries. A pod that is already a member never forms or joins again. With --role "
        "proxy it runs beside a proxy-tier pod: once a formed cluster answers among --pods, "
        "it has that cluster meet --self, again whenever the cluster no longer knows it. See "
        "docs/kubernetes.md.",
    )
    cmd.add_argument(
        "--role",
        choices=[r.value for r in bootstrap.Role],
        default=bootstrap.Role.CACHE.value,
        help="the pod this runs beside: a StatefulSet cache pod (default) or a proxy",
    )
    cmd.add_argument(
        "--self",
        dest="self_address",
        type=types.address,
        required=True,
        metavar="HOST:PORT",
        help="this pod's node: for a cache pod as it appears among the --pods names",
    )
    cmd.add_argument(
        "--pods",
        required=True,
        metavar="PATTERN",
        help="every pod's HOST:PORT with {ordinal} for its ordinal, "
        "e.g. slotcache-{ordinal}.slotcache-headless.NAMESPACE.svc:7000",
    )
    cmd.add_argument(
        "--primaries",
        type=types.int_in(1, 16384, "--primaries"),
        metavar="N",
        help="primaries of the cluster formed at first start (needed beside a cache pod)",
    )
    cmd.add_argument(
        "--replicas",
        type=types.int_in(0, 63, "--replicas"),
        default=1,
        metavar="R",
        help="replicas per primary (default 1)",
    )
    cmd.add_argument(
        "--policy",
        choices=[p.value for p in JoinPolicy],
        default=JoinPolicy.REPLICAS_FIRST.value,
        help="what a pod added later becomes (default replicas-first)",
    )
    cmd.add_argument(
        "--max-pods",
        type=types.int_in(1, 1000, "--max-pods"),
        default=64,
        metavar="N",
        help="ordinals 0..N-1 are looked for (default 64)",
    )
    _add_seconds(cmd, "--interval", 2.0, "seconds between rounds")
    cmd.add_argument("--once", action="store_true", help="one round, then exit")
    cmd.set_defaults(func=bootstrap.cmd_bootstrap)


def _add_observe(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    top = _add_node_command(
        sub,
        "top",
        "a live view of every node: ops/s, hit ratio, p99, memory, keys, clients, lag",
        observe_commands.cmd_top,
    )
    top.add_argument(
        "--interval",
        type=types.positive_seconds,
        default=DEFAULT_TOP_INTERVAL_S,
        metavar="SECS",
        help=f"seconds between refreshes (default {DEFAULT_TOP_INTERVAL_S:g})",
    )
    top.add_argument(
        "--once", action="store_true", help="print one refresh (rates over --interval) and exit"
    )
    slowlog = _add_node_command(
        sub,
        "slowlog",
        "show the slowest recent operations a node kept (its slow log)",
        observe_commands.cmd_slowlog,
    )
    slowlog.add_argument("--all", action="store_true", help="ask every node of the cluster")
    slowlog.add_argument(
        "--count",
        type=types.int_in(0, 100_000, "--count"),
        default=0,
        metavar="N",
        help="at most N entries per node (default: all kept)",
    )
    slowlog.add_argument("--reset", action="store_true", help="empty the logs after reading")
    hotkeys = _add_node_command(
        sub,
        "hotkeys",
        "show the cluster's most accessed keys, from every node's sampled counts",
        observe_commands.cmd_hotkeys,
    )
    hotkeys.add_argument(
        "--count",
        type=types.int_in(1, 10_000, "--count"),
        default=10,
        metavar="N",
        help="how many keys (default 10)",
    )
    hotkeys.add_argument("--reset", action="store_true", help="forget the counts after reading")


def _use_credentials(args: argparse.Namespace) -> None:
    try:
        auth.configure(auth.token_from(args.token, args.token_file), args.user)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _use_tls(args: argparse.Namespace) -> None:
    """Connect with the TLS flags; commands without them (``down``) connect to nothing."""
    try:
        tls = None
        if hasattr(args, "tls_ca"):
            tls = transport.tls_options(args.tls_ca, args.tls_cert, args.tls_key)
        transport.use_tls(tls)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; see the module docstring for the exit statuses."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 after a usage error, 0 after --help
        return exc.code if isinstance(exc.code, int) else 2
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        if hasattr(args, "token"):
            _use_credentials(args)
        _use_tls(args)
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
