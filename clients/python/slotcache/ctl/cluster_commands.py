"""The commands that talk to running nodes: info, nodes, slots, check and create.

Each one fetches, hands the answer to the pure view code, and prints either
a rich table or JSON. Failures raise :class:`~slotcache.ctl.cluster_ops.OperationError`, which the
entry point reports with exit status 1.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from slotcache.ctl import check, check_replication, output, views
from slotcache.ctl.args import UsageError
from slotcache.ctl.cluster_ops import (
    NodeHandle,
    OperationError,
    create_cluster,
    fetch_infos,
    fetch_state,
    fetch_states,
    plan_roles,
)
from slotcache.ctl.views import format_ranges, short_id
from slotcache.ctl.wording import counted


def cmd_info(args: argparse.Namespace) -> int:
    """Print one node's identity and counters."""
    with NodeHandle.open(args.address, args.timeout) as node:
        reply = node.info()
    server, stats = dict(reply.server), dict(reply.stats)
    if args.json:
        output.emit_json({"server": server, "stats": stats})
        return 0
    output.console.print(output.key_value_table(f"node {args.address}", server))
    output.console.print(output.key_value_table("stats", stats))
    return 0


def cmd_nodes(args: argparse.Namespace) -> int:
    """Print every node the given node knows, with its role, flags, epochs, slots and liveness."""
    view = views.nodes_view(args.address, fetch_state(args.address, args.timeout))
    if args.json:
        output.emit_json(view)
        return 0
    output.console.print(views.summary_line(view), highlight=False)
    output.console.print(output.rows_table("nodes", views.NODE_COLUMNS, views.node_rows(view)))
    return 0


def cmd_slots(args: argparse.Namespace) -> int:
    """Print who owns which slots in the given node's view (or who owns one slot)."""
    view = views.slots_view(args.address, fetch_state(args.address, args.timeout))
    if args.slot is not None:
        entry = views.slot_owner(view, args.slot)
        if args.json:
            output.emit_json(entry)
        elif entry["node_id"]:
            output.console.print(
                f"slot {args.slot} is served by {entry['address']} "
                f"(node {short_id(entry['node_id'])}), which owns "
                f"{format_ranges([(entry['start'], entry['end'])])}",
                highlight=False,
            )
        else:
            output.console.print(f"slot {args.slot} has no owner", highlight=False)
        return 0 if entry["node_id"] else 1
    if args.json:
        output.emit_json(view)
        return 0
    title = f"slots in the view of {args.address}: {view['assigned']} assigned"
    if view["unassigned"]:
        title += f", {view['unassigned']} UNASSIGNED"
    ranges = view["ranges"]
    output.console.print(output.rows_table(title, views.SLOT_COLUMNS, views.slot_rows(ranges)))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Ask every node the seed knows for its view; exit 1 and list the problems unless all agree.

    Replication findings that heal by themselves are warnings and leave the
    exit status 0 (see :mod:`slotcache.ctl.check_replication`).
    """
    seed_state = fetch_state(args.address, args.timeout)
    expected = check.targets(args.address, seed_state)
    with output.progress(f"asking {counted(len(expected), 'node')} for their view"):
        others = fetch_states([a for a in expected if a != args.address], args.timeout)
        states = {args.address: seed_state, **others}
        answered = [a for a, s in states.items() if not isinstance(s, Exception)]
        infos = fetch_infos(answered, args.timeout)
    problems = check.find_problems(args.address, expected, states)
    warnings = check_replication.sync_warnings(check.labels(expected), states, infos)
    data = check.report(expected, states, problems, infos, warnings)
    if args.json:
        output.emit_json(data)
        return 0 if not problems else 1
    output.console.print(
        output.rows_table(
            f"cluster seen from {args.address}", check.CHECK_COLUMNS, check.check_rows(data)
        )
    )
    _print_findings("[red]{} problem(s):[/red]", problems)
    _print_findings("[yellow]{} warning(s)[/yellow] (these do not fail the check):", warnings)
    if not problems:
        output.console.print(
            f"[green]OK[/green]: all 16384 slots are covered and "
            f"{counted(len(expected), 'node')} agree on the view",
            highlight=False,
        )
    return 0 if not problems else 1


def _print_findings(heading: str, findings: Sequence[str]) -> None:
    if findings:
        output.console.print(heading.format(len(findings)))
        for finding in findings:
            output.console.print(f"  - {finding}", highlight=False, markup=False)


def cmd_create(args: argparse.Namespace) -> int:
    """Form a new cluster: split the slots over the primaries, attach the replicas, meet."""
    duplicates = sorted({a for a in args.addresses if args.addresses.count(a) > 1})
    if duplicates:
        raise UsageError(f"{', '.join(duplicates)} is listed more than once")
    try:
        primaries, followed = plan_roles(len(args.addresses), args.replicas)
    except OperationError as exc:
        raise UsageError(str(exc)) from None
    if not args.json:
        _print_plan(args.addresses, primaries, followed)
    with output.progress(
        f"forming a cluster of {counted(len(args.addresses), 'node')}"
    ) as progress:
        created = create_cluster(
            args.addresses,
            replicas=args.replicas,
            timeout=args.timeout,
            wait_s=args.wait,
            progress=progress,
        )
    nodes = views.created_entries(created)
    if args.json:
        output.emit_json({"replicas": args.replicas, "nodes": nodes})
        return 0
    output.console.print(
        output.rows_table("cluster created", views.CREATED_COLUMNS, views.created_rows(nodes))
    )
    synced = " and every replica is in sync" if followed else ""
    output.console.print(
        f"all {counted(len(nodes), 'node')} agree{synced}; check it any time with: "
        f"clusterctl check {args.addresses[0]}",
        highlight=False,
        markup=False,
    )
    return 0


def _print_plan(addresses: Sequence[str], primaries: int, followed: Sequence[int]) -> None:
    """Say which node will replicate which before the (possibly long) wait starts."""
    if not followed:
        return
    each = len(followed) // primaries
    output.console.print(
        f"plan: {primaries} primaries with {counted(each, 'replica')} each",
        highlight=False,
    )
    for replica, primary in zip(addresses[primaries:], followed, strict=True):
        output.console.print(
            f"  {replica} will replicate {addresses[primary]}", highlight=False, markup=False
        )
