"""The commands that talk to running nodes: info, nodes, slots, check and create.

Each one fetches, hands the answer to the pure view code, and prints either
a rich table or JSON. Failures raise :class:`~slotcache.ctl.cluster_ops.OperationError`, which the
entry point reports with exit status 1.
"""

from __future__ import annotations

import argparse
from typing import Any

from slotcache.ctl import check, output, views
from slotcache.ctl.args import UsageError
from slotcache.ctl.cluster_ops import (
    NodeHandle,
    create_cluster,
    fetch_state,
    fetch_states,
)
from slotcache.ctl.views import format_ranges, short_id


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
    """Ask every node the seed knows for its view; exit 1 and list the problems unless all agree."""
    seed_state = fetch_state(args.address, args.timeout)
    expected = check.targets(args.address, seed_state)
    with output.progress(f"asking {len(expected)} nodes for their view"):
        others = fetch_states([a for a in expected if a != args.address], args.timeout)
    states = {args.address: seed_state, **others}
    problems = check.find_problems(args.address, expected, states)
    data = check.report(expected, states, problems)
    if args.json:
        output.emit_json(data)
    else:
        output.console.print(
            output.rows_table(
                f"cluster seen from {args.address}", check.CHECK_COLUMNS, check.check_rows(data)
            )
        )
        if problems:
            output.console.print(f"[red]{len(problems)} problem(s):[/red]")
            for problem in problems:
                output.console.print(f"  - {problem}", highlight=False, markup=False)
        else:
            output.console.print(
                f"[green]OK[/green]: all 16384 slots are covered and "
                f"{len(expected)} nodes agree on the view",
                highlight=False,
            )
    return 0 if not problems else 1


def cmd_create(args: argparse.Namespace) -> int:
    """Form a new cluster: split the slots evenly over the nodes and have them all meet."""
    duplicates = sorted({a for a in args.addresses if args.addresses.count(a) > 1})
    if duplicates:
        raise UsageError(f"{', '.join(duplicates)} is listed more than once")
    with output.progress(f"forming a cluster of {len(args.addresses)} nodes"):
        created = create_cluster(args.addresses, timeout=args.timeout, wait_s=args.wait)
    nodes: list[dict[str, Any]] = [
        {
            "address": address,
            "id": node_id,
            "slots": [list(slot_range)],
            "slot_count": slot_range[1] - slot_range[0] + 1,
        }
        for address, node_id, slot_range in created
    ]
    if args.json:
        output.emit_json({"nodes": nodes})
        return 0
    rows = [
        [n["address"], short_id(n["id"]), format_ranges([tuple(n["slots"][0])]), n["slot_count"]]
        for n in nodes
    ]
    output.console.print(
        output.rows_table("cluster created", ("address", "id", "slots", "count"), rows)
    )
    output.console.print(
        f"all {len(nodes)} nodes agree; check it any time with: "
        f"clusterctl check {args.addresses[0]}",
        highlight=False,
        markup=False,
    )
    return 0
