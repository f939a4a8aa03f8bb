"""The commands that change who serves and who copies: add-node and failover.

The operations live in :mod:`slotcache.ctl.add_node` and
:mod:`slotcache.ctl.failover`; this module shows their progress and
outcome, as a sentence for people or as JSON for scripts.
"""

from __future__ import annotations

import argparse
from typing import Any

from slotcache.ctl import output
from slotcache.ctl.add_node import add_node
from slotcache.ctl.args import UsageError
from slotcache.ctl.failover import FailoverOutcome, Mode, failover
from slotcache.ctl.views import short_id
from slotcache.ctl.wording import counted

# What to try next when a failover mode did not promote the replica in time.
_NEXT_STEP = {
    Mode.GRACEFUL: "a graceful failover needs the primary to answer and pause; "
    "if it is down, use --force",
    Mode.FORCE: "--force still needs the votes of a majority of primaries; "
    "if no majority can be reached, --takeover promotes without votes",
    Mode.TAKEOVER: "see the replica's log for why it did not take over",
}


def cmd_add_node(args: argparse.Namespace) -> int:
    """Add an empty node to a cluster, as a primary without slots or as a replica."""
    if args.new == args.existing:
        raise UsageError(f"NEW and EXISTING are both {args.new}; EXISTING must be another node")
    with output.progress(f"adding {args.new} to the cluster of {args.existing}") as progress:
        added = add_node(
            args.new,
            args.existing,
            args.replica_of,
            timeout=args.timeout,
            wait_s=args.wait,
            progress=progress,
        )
    if args.json:
        output.emit_json(
            {
                "address": added.address,
                "id": added.id,
                "role": added.role,
                "primary_id": added.primary_id,
                "primary_address": added.primary_address,
                "cluster_size": added.cluster_size,
                "keys": added.keys,
            }
        )
        return 0
    who = f"{added.address} ({short_id(added.id)})"
    if added.primary_id:
        output.console.print(
            f"[green]added[/green] {who} as a replica of {added.primary_address} "
            f"({short_id(added.primary_id)}): all {added.cluster_size} nodes know it, "
            f"and it is in sync ({counted(added.keys, 'key')})",
            highlight=False,
        )
    else:
        output.console.print(
            f"[green]added[/green] {who} as a primary without slots: all "
            f"{added.cluster_size} nodes know it; it serves no keys until slots are moved to it",
            highlight=False,
        )
    output.console.print(
        f"check it any time with: clusterctl check {added.address}", highlight=False, markup=False
    )
    return 0


def cmd_failover(args: argparse.Namespace) -> int:
    """Promote a replica in place of its primary; exit 1 if it was not promoted in time."""
    with output.progress(f"{args.mode.value} failover of {args.address}") as progress:
        outcome = failover(args.address, args.mode, timeout=args.timeout, progress=progress)
    if args.json:
        output.emit_json(_failover_json(outcome))
    else:
        _print_failover(outcome)
    if not outcome.promoted:
        output.error(
            f"{args.address} was not promoted within {args.timeout:g}s; {_NEXT_STEP[outcome.mode]}"
        )
        return 1
    return 0


def _failover_json(outcome: FailoverOutcome) -> dict[str, Any]:
    old = outcome.old_primary
    return {
        "address": outcome.address,
        "id": outcome.id,
        "mode": outcome.mode.value,
        "promoted": outcome.promoted,
        "seconds": round(outcome.seconds, 3),
        "old_primary": {
            "id": old.id,
            "address": old.address or None,
            "role": old.role,
            "primary_id": old.primary_id,
            "error": old.error,
        },
    }


def _print_failover(outcome: FailoverOutcome) -> None:
    console = output.console
    who = f"{outcome.address} ({short_id(outcome.id)})"
    if outcome.promoted:
        console.print(
            f"[green]promoted[/green]: {who} is now a primary "
            f"({outcome.mode.value} failover, {outcome.seconds:.1f}s)",
            highlight=False,
        )
    else:
        console.print(f"[red]not promoted[/red]: {who} is still a replica", highlight=False)
    old = outcome.old_primary
    previous = f"the old primary {old.address or '(address unknown)'} ({short_id(old.id)})"
    if old.role is None:
        console.print(f"{previous} could not be asked: {old.error}", highlight=False, markup=False)
    elif old.primary_id == outcome.id:
        console.print(f"{previous} is now a replica of {who}", highlight=False, markup=False)
    elif old.role == "primary" and outcome.promoted:
        console.print(
            f"{previous} still reports itself as a primary; it steps down to a replica "
            "once it hears of the promotion",
            highlight=False,
            markup=False,
        )
    else:
        console.print(f"{previous} is a {old.role}", highlight=False, markup=False)
