"""The commands that move slots and repair clusters: reshard, rebalance, del-node and fix.

Planning is pure (:mod:`slotcache.ctl.rebalance_plan`), execution lives in
:mod:`slotcache.ctl.resharding`, :mod:`slotcache.ctl.del_node` and
:mod:`slotcache.ctl.fix`; this module asks for confirmation, shows progress
and prints the outcome as tables or JSON.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from slotcache.contract import to_ranges
from slotcache.ctl import output
from slotcache.ctl.args import UsageError
from slotcache.ctl.del_node import DeletedNode, delete_node
from slotcache.ctl.fix import fix_cluster
from slotcache.ctl.rebalance_plan import (
    Move,
    Plan,
    PlanError,
    plan_rebalance,
    plan_reshard,
)
from slotcache.ctl.resharding import (
    ClusterView,
    MoveOutcome,
    Runner,
    load_cluster,
    resolve_primary,
    slot_stats,
    stop_on_sigint,
    wait_converged,
)
from slotcache.ctl.rpc import OperationError
from slotcache.ctl.views import format_ranges, short_id
from slotcache.ctl.wording import counted, human_bytes, key_rate

INTERRUPTED = 130
# Under every plan: why its memory column is larger than what the move then reports.
ESTIMATE_NOTE = (
    "est. memory: what the keys take in the nodes' memory (SlotStats: keys, values and "
    "per-key overhead); the move itself reports the smaller count of key and value bytes sent"
)


# ---- reshard --------------------------------------------------------------------------------


def cmd_reshard(args: argparse.Namespace) -> int:
    """Move N slots to one primary, from one or more primaries or from all the others."""
    with output.progress(f"reading the cluster through {args.address}"):
        view = load_cluster(args.address, args.timeout, args.wait)
        target = resolve_primary(view, args.to, "a target")
        sources = (
            None
            if args.sources == ["all"]
            else [resolve_primary(view, s, "a source") for s in args.sources]
        )
        if sources is not None and target in sources:
            raise UsageError("--to names one of the --from primaries")
        stats = slot_stats(view, args.timeout)
    try:
        moves = plan_reshard(view.loads(), target, sources, args.slots, stats)
    except PlanError as exc:
        raise OperationError(f"{exc}; nothing was changed") from None
    plan = _moves_json(view, moves)
    if not args.json:
        _print_moves(view, moves, f"plan: move {args.slots:,} slots to {view.name(target)}")
    if not args.yes and not output.confirm(f"Move {args.slots:,} slots now?"):
        output.error("not confirmed; nothing was changed")
        return 1
    outcome, converged = _execute(args, view, moves, stats, f"resharding to {view.name(target)}")
    if args.json:
        output.emit_json({"moves": plan, "result": _outcome_json(outcome, converged)})
    else:
        _print_outcome(outcome, converged, args)
    return _status(outcome, converged)


def _execute(
    args: argparse.Namespace,
    view: ClusterView,
    moves: Sequence[Move],
    stats: Mapping[int, Any],
    title: str,
) -> tuple[MoveOutcome, str | None]:
    """Run the moves with a progress bar; Ctrl-C stops after (or cancels) the batch in flight."""
    total = sum(len(m.slots) for m in moves)
    names = {node_id: view.name(node_id) for node_id in view.addresses}
    with output.migration_progress(title, total) as bar, stop_on_sigint(bar.note) as stop:
        runner = Runner(view.addresses, args.timeout, bar, stop, names)
        outcome = runner.run(moves, args.batch_slots, stats, args.parallel, args.batch_keys)
    converged: str | None = None
    if outcome.slots_moved:
        with output.progress("waiting for every node to agree on the new owners") as progress:
            converged = wait_converged(args.address, args.timeout, args.wait, progress)
    return outcome, converged


def _status(outcome: MoveOutcome, converged: str | None) -> int:
    if outcome.error or converged is not None:
        return 1
    return INTERRUPTED if outcome.interrupted else 0


def _moves_json(view: ClusterView, moves: Sequence[Move]) -> list[dict[str, Any]]:
    return [
        {
            "source": m.source,
            "source_address": view.addresses.get(m.source),
            "target": m.target,
            "target_address": view.addresses.get(m.target),
            "slots": len(m.slots),
            "ranges": [list(r) for r in to_ranges(m.slots)],
            "keys": m.keys,
            "bytes": m.bytes,
        }
        for m in moves
    ]


def _print_moves(view: ClusterView, moves: Sequence[Move], title: str) -> None:
    rows = [
        [
            view.name(m.source),
            view.name(m.target),
            len(m.slots),
            format_ranges(to_ranges(m.slots)),
            m.keys,
            human_bytes(m.bytes),
        ]
        for m in moves
    ]
    total = [
        "total",
        "",
        sum(len(m.slots) for m in moves),
        "",
        sum(m.keys for m in moves),
        human_bytes(sum(m.bytes for m in moves)),
    ]
    output.console.print(
        output.rows_table(
            title, ("from", "to", "slots", "ranges", "keys", "est. memory"), [*rows, total]
        )
    )
    output.console.print(ESTIMATE_NOTE, highlight=False)


def _outcome_json(outcome: MoveOutcome, converged: str | None) -> dict[str, Any]:
    return {
        "slots_planned": outcome.planned_slots,
        "slots_moved": outcome.slots_moved,
        "keys_moved": outcome.keys_moved,
        "bytes_moved": outcome.bytes_moved,
        "seconds": round(outcome.seconds, 3),
        "keys_per_s": round(outcome.keys_per_s, 1),
        "started_at": round(outcome.started_at, 3),
        "finished_at": round(outcome.finished_at, 3),
        "interrupted": outcome.interrupted,
        "error": outcome.error or None,
        "converged": converged is None,
        "not_converged": converged,
        "batches": [
            {
                "migration_id": b.migration_id,
                "source": b.source,
                "target": b.target,
                "slots": len(b.slots),
                "ranges": [list(r) for r in to_ranges(b.slots)],
                "keys": b.keys,
                "bytes": b.bytes,
                "seconds": round(b.seconds, 3),
                "outcome": b.outcome,
                "attempts": b.attempts,
                "error": b.error or None,
            }
            for b in outcome.batches
        ],
    }


def _print_outcome(outcome: MoveOutcome, converged: str | None, args: argparse.Namespace) -> None:
    console = output.console
    done = len(outcome.done)
    rate = key_rate(outcome.keys_moved, outcome.seconds)
    console.print(
        f"moved {outcome.slots_moved:,} of {counted(outcome.planned_slots, 'slot')} "
        f"({counted(outcome.keys_moved, 'key')}, {human_bytes(outcome.bytes_moved)} of keys "
        f"and values sent) in {outcome.seconds:.1f}s: "
        f"{f'{rate}, ' if rate else ''}{counted(done, 'migration')}",
        highlight=False,
    )
    if outcome.interrupted:
        output.warning(
            "interrupted: the batches that completed moved their slots; the one in flight "
            "either completed or was rolled back, so every slot has exactly one owner. "
            "Run the command again to move the rest."
        )
    if outcome.error:
        output.error(
            f"a batch failed: {outcome.error}. Its slots stayed with their source and the "
            f"target dropped its copy; nothing is half-moved. See clusterctl check "
            f"{args.address} (and clusterctl fix {args.address} if a node went down)."
        )
    if converged is not None:
        output.error(
            f"the nodes did not agree within {args.wait:g}s ({converged}); "
            f"see clusterctl check {args.address}"
        )
    elif outcome.slots_moved:
        console.print(
            f"[green]OK[/green]: every node agrees on the new owners "
            f"(clusterctl check {args.address})",
            highlight=False,
        )


# ---- rebalance ------------------------------------------------------------------------------


def cmd_rebalance(args: argparse.Namespace) -> int:
    """Even out slots (or keys, or memory) over the primaries, as redis-cli does."""
    with output.progress(f"reading the cluster through {args.address}"):
        view = load_cluster(args.address, args.timeout, args.wait)
        weights = _weights(view, args.weight, args.use_empty_primaries)
        stats = slot_stats(view, args.timeout)
    try:
        plan = plan_rebalance(
            view.loads(),
            stats,
            unit=args.by,
            threshold_pct=args.threshold,
            weights=weights,
            use_empty=args.use_empty_primaries,
        )
    except PlanError as exc:
        raise OperationError(f"{exc}; nothing was changed") from None
    data = _plan_json(view, plan, args.dry_run)
    if not args.json:
        _print_plan(view, plan)
    if args.dry_run or not plan.moves:
        if args.json:
            output.emit_json({**data, "result": None})
        elif not plan.moves:
            output.console.print(f"nothing to do: {plan.reason}", highlight=False)
        else:
            output.console.print("dry run: nothing was changed", highlight=False)
        return 0
    question = f"Move {plan.slots_moved:,} slots in {len(plan.moves)} moves now?"
    if not args.yes and not output.confirm(question):
        output.error("not confirmed; nothing was changed")
        return 1
    outcome, converged = _execute(args, view, plan.moves, stats, "rebalancing")
    if args.json:
        output.emit_json({**data, "result": _outcome_json(outcome, converged)})
    else:
        _print_outcome(outcome, converged, args)
    return _status(outcome, converged)


def _weights(
    view: ClusterView, given: Sequence[tuple[str, float]] | None, use_empty: bool
) -> dict[str, float]:
    """``--weight`` options (id prefix, weight) by full primary id."""
    weights: dict[str, float] = {}
    for prefix, weight in given or []:
        node_id = resolve_primary(view, prefix, "weighed")
        if node_id in weights:
            raise UsageError(f"--weight names {short_id(node_id)} twice")
        weights[node_id] = weight
        owns = any(p.node.id == node_id and p.node.slots for p in view.primaries)
        if not owns and not use_empty and weight > 0:
            raise UsageError(
                f"{view.name(node_id)} owns no slots; add --use-empty-primaries to give it some"
            )
    return weights


def _plan_json(view: ClusterView, plan: Plan, dry_run: bool) -> dict[str, Any]:
    return {
        "unit": plan.unit,
        "threshold_pct": plan.threshold_pct,
        "dry_run": dry_run,
        "reason": plan.reason or None,
        "imbalance_before_pct": round(plan.imbalance_before_pct, 3),
        "imbalance_after_pct": round(plan.imbalance_after_pct, 3),
        "slots_moved": plan.slots_moved,
        "keys_moved": plan.keys_moved,
        "bytes_moved": plan.bytes_moved,
        "nodes": [
            {
                "id": n.id,
                "address": view.addresses.get(n.id),
                "weight": n.weight,
                "expected": round(n.expected, 3),
                "before": n.before,
                "after": n.after,
                "deviation_before_pct": round(n.deviation_before_pct, 3),
                "deviation_after_pct": round(n.deviation_after_pct, 3),
                "slots_before": n.slots_before,
                "slots_after": n.slots_after,
                "keys_before": n.keys_before,
                "keys_after": n.keys_after,
                "bytes_before": n.bytes_before,
                "bytes_after": n.bytes_after,
            }
            for n in plan.nodes
        ],
        "moves": _moves_json(view, plan.moves),
    }


def _signed_pct(load: float, expected: float) -> str:
    if expected <= 0:
        return "must be empty" if load else "0%"
    return f"{(load - expected) * 100 / expected:+.1f}%"


def _print_plan(view: ClusterView, plan: Plan) -> None:
    unit = {"slots": "slots", "keys": "keys", "memory": "memory"}[plan.unit]

    def fmt(value: float) -> str:
        return human_bytes(value) if plan.unit == "memory" else f"{value:,.0f}"

    rows = [
        [
            view.name(n.id),
            f"{n.weight:g}",
            fmt(n.expected),
            f"{fmt(n.before)} ({_signed_pct(n.before, n.expected)})",
            f"{fmt(n.after)} ({_signed_pct(n.after, n.expected)})",
            f"{n.slots_before:,} -> {n.slots_after:,}",
            f"{n.keys_before:,} -> {n.keys_after:,}",
        ]
        for n in plan.nodes
    ]
    output.console.print(
        output.rows_table(
            f"rebalance by {unit}, threshold {plan.threshold_pct:g}%",
            (
                "primary",
                "weight",
                f"expected {unit}",
                "before (off by)",
                "after (off by)",
                "slots",
                "keys",
            ),
            rows,
        )
    )
    output.console.print(
        f"imbalance (largest deviation from a primary's share): "
        f"{plan.imbalance_before_pct:.1f}% before, {plan.imbalance_after_pct:.1f}% after",
        highlight=False,
    )
    if plan.moves:
        _print_moves(view, plan.moves, f"{len(plan.moves)} moves")


# ---- del-node -------------------------------------------------------------------------------


def cmd_del_node(args: argparse.Namespace) -> int:
    """Forget a slotless node everywhere and stop it."""
    with output.progress(f"removing {args.node_id} from the cluster of {args.address}") as progress:
        deleted = delete_node(
            args.address, args.node_id, timeout=args.timeout, wait_s=args.wait, progress=progress
        )
    if args.json:
        output.emit_json(_deleted_json(deleted))
    else:
        _print_deleted(deleted)
    for warning in deleted.warnings:
        output.warning(warning)
    if deleted.stop_error and "cannot reach" not in deleted.stop_error:
        output.error(f"{deleted.address} was forgotten but not stopped: {deleted.stop_error}")
        return 1
    return 0


def _deleted_json(deleted: DeletedNode) -> dict[str, Any]:
    return {
        "id": deleted.id,
        "address": deleted.address,
        "role": deleted.role,
        "primary_id": deleted.primary_id,
        "forgotten_by": deleted.forgotten_by,
        "reassigned": [{"address": a, "id": i, "primary_id": p} for a, i, p in deleted.reassigned],
        "stopped": deleted.stopped,
        "stop_error": deleted.stop_error,
        "warnings": deleted.warnings,
    }


def _print_deleted(deleted: DeletedNode) -> None:
    console = output.console
    who = f"{deleted.address} ({short_id(deleted.id)})"
    for address, replica, primary in deleted.reassigned:
        console.print(
            f"moved its replica {address} ({short_id(replica)}) to primary {short_id(primary)}",
            highlight=False,
        )
    console.print(
        f"[green]removed[/green] {who}: forgotten by {counted(len(deleted.forgotten_by), 'node')}",
        highlight=False,
    )
    if deleted.stopped:
        console.print(f"{who} has stopped (its node file was deleted)", highlight=False)
    elif deleted.stop_error and "cannot reach" in deleted.stop_error:
        console.print(f"{who} did not answer, so it was not stopped (down already?)")


# ---- fix ------------------------------------------------------------------------------------


def cmd_fix(args: argparse.Namespace) -> int:
    """Cancel orphaned or stuck migrations, give unowned slots an owner, wait for agreement."""
    with output.progress(f"repairing the cluster of {args.address}") as progress:
        report = fix_cluster(
            args.address,
            timeout=args.timeout,
            wait_s=args.wait,
            stuck_after_s=args.stuck_after,
            progress=progress,
        )
    if args.json:
        output.emit_json(report.as_json())
        return 0 if report.ok else 1
    for action in report.actions:
        output.console.print(f"- {action}", highlight=False, markup=False)
    for warning in report.warnings:
        output.warning(warning)
    for problem in report.problems:
        output.error(problem)
    if report.ok:
        output.console.print(
            f"[green]OK[/green]: no migration is left running, every slot has one owner and "
            f"the nodes agree (clusterctl check {args.address})",
            highlight=False,
        )
    return 0 if report.ok else 1
