"""``clusterctl acl``: the ACL log, reloading the users, and hashing a token for the ACL file."""

from __future__ import annotations

import argparse
import getpass
import hashlib
import sys
import time
from collections.abc import Callable
from typing import Any

from slotcache.ctl import output
from slotcache.ctl.observe import node_addresses
from slotcache.ctl.observe_commands import report_unreachable
from slotcache.ctl.rpc import OperationError, ask_all, fetch_state
from slotcache.v1 import admin_pb2

LOG_COLUMNS = ("node", "reason", "user", "peer", "op", "key", "count", "first", "last")
AddNodeCommand = Callable[..., argparse.ArgumentParser]


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], add_node_command: AddNodeCommand
) -> None:
    """``acl log``, ``acl reload`` and ``acl hash-token``."""
    acl = sub.add_parser(
        "acl",
        help="users and permissions: the ACL log, reloading, hashing tokens",
        description="Work with the users of nodes started with --acl-file (docs/security.md).",
    )
    commands = acl.add_subparsers(dest="acl_command", required=True, metavar="ACL_COMMAND")
    log = add_node_command(
        commands, "log", "show refused calls and operations, grouped per minute", cmd_log
    )
    log.add_argument("--all", action="store_true", help="ask every node of the cluster")
    log.add_argument("--count", type=int, default=0, metavar="N", help="at most N per node")
    log.add_argument("--reset", action="store_true", help="empty the logs after reading")
    reload = add_node_command(
        commands, "reload", "make a node read its ACL file again (as SIGHUP does)", cmd_reload
    )
    reload.add_argument("--all", action="store_true", help="reload every node of the cluster")
    hashing = commands.add_parser(
        "hash-token",
        help="print the #<sha256> rule of a token read from stdin",
        description="Read a token from standard input (prompting on a terminal) and print "
        "the rule that lets it authenticate, for a user line of the ACL file. The token "
        "itself is never printed.",
    )
    hashing.set_defaults(func=cmd_hash_token)


def _addresses(args: argparse.Namespace) -> list[str]:
    if not args.all:
        return [args.address]
    return node_addresses(fetch_state(args.address, args.timeout), args.address)


def log_rows(replies: dict[str, admin_pb2.AclLogReply]) -> list[dict[str, Any]]:
    """Every node's entries, the most recent refusal first."""
    rows: list[dict[str, Any]] = [
        {
            "node": address,
            **{f.name: getattr(e, f.name) for f in e.DESCRIPTOR.fields},
            "key": e.key.decode("utf-8", "backslashreplace"),
        }
        for address, reply in replies.items()
        for e in reply.entries
    ]
    rows.sort(key=lambda r: r["last_ms"], reverse=True)
    return rows


def _ago(ms: int, now_ms: int) -> str:
    return f"{max(0, now_ms - ms) / 1000:.0f}s ago"


def cmd_log(args: argparse.Namespace) -> int:
    """Show the ACL log of one node, or of every node with --all."""
    addresses = _addresses(args)
    request = admin_pb2.AclLogRequest(count=max(args.count, 0), reset=args.reset)
    replies: dict[str, Any] = report_unreachable(
        ask_all(addresses, args.timeout, lambda node: node.call("AclLog", request))
    )
    now_ms = time.time_ns() // 1_000_000
    rows = log_rows(replies)
    if args.json:
        output.emit_json(rows)
        return 0 if replies else 1
    cells = [
        [*(r[c] for c in LOG_COLUMNS[:7]), _ago(r["first_ms"], now_ms), _ago(r["last_ms"], now_ms)]
        for r in rows
    ]
    title = f"ACL log ({len(rows)} entries from {len(replies)} of {len(addresses)} nodes)"
    output.console.print(output.rows_table(title, LOG_COLUMNS, cells))
    without = [a for a, r in replies.items() if not r.acl_enabled]
    if without:
        output.warning(f"no ACL file on {', '.join(without)}")
    return 0 if replies else 1


def cmd_reload(args: argparse.Namespace) -> int:
    """Reload the ACL file on one node or every node; exit 1 if any refused it."""
    addresses = _addresses(args)
    results = ask_all(
        addresses, args.timeout, lambda node: node.call("AclReload", admin_pb2.AclReloadRequest())
    )
    failed = 0
    summary: dict[str, str] = {}
    for address, result in results.items():
        if isinstance(result, OperationError):
            failed += 1
            summary[address] = f"error: {result}"
        else:
            assert isinstance(result, admin_pb2.AclReloadReply)
            summary[address] = result.message
    if args.json:
        output.emit_json(summary)
    else:
        output.console.print(output.key_value_table("ACL reload", summary))
    return 1 if failed else 0


def cmd_hash_token(args: argparse.Namespace) -> int:
    """Print ``#<sha256>`` of the token on stdin, for the ACL file."""
    if sys.stdin.isatty():
        token = getpass.getpass("token: ")
    else:
        token = sys.stdin.readline().rstrip("\r\n")
    if not token:
        output.error("no token given on standard input")
        return 1
    print("#" + hashlib.sha256(token.encode()).hexdigest())
    return 0
