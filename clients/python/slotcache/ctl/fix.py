"""``clusterctl fix``: bring an interrupted cluster back to a clean state.

What an interrupted ``reshard``, a killed node or a half-finished ``create``
can leave behind, and what ``fix`` does about it, in this order:

1. **Migrations that will not finish.** Every node that answers is asked
   for its migrations. One that runs on one side only (the other node is
   down, or has already given up) is *orphaned*; one whose progress has not
   moved for ``stuck_after_s`` is *stuck*. Either is cancelled on the target
   (which drops what it received) or, when the target does not answer, on
   the source (which releases the writes it holds). Migrations that make
   progress are left to finish, for at most ``wait_s``. Cancelling is always
   safe: the source keeps the slots until the target claims them.
2. **Slots nobody owns.** A slot that no node's view assigns goes to the
   primary that holds keys for it (SlotStats; the most keys wins), else to
   the primary with the fewest slots (``AddSlots``).
3. **Slots the views disagree on**, once gossip had ``wait_s`` to settle
   them: the candidate owner holding the most keys for them (then the one
   with the highest config epoch) claims them under a new epoch
   (``ClaimSlots``), which makes every node follow it.
4. Waits until every node that answers agrees, and reports what it did and
   what is left (a node that does not answer and owns slots is a problem
   fix cannot solve: restart it or fail over to a replica).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from slotcache.contract import SLOT_COUNT, to_ranges
from slotcache.ctl.resharding import ACTIVE_STATES, STATE_NAMES, migration_status, wait_converged
from slotcache.ctl.roles import is_primary, is_replica
from slotcache.ctl.rpc import (
    NodeHandle,
    OperationError,
    Progress,
    ask_all,
    ignore_progress,
)
from slotcache.ctl.views import format_ranges, owner_table, ranges_of, short_id
from slotcache.ctl.wording import counted
from slotcache.v1 import admin_pb2, cache_pb2

DEFAULT_STUCK_AFTER_S = 5.0
# A migration's two records appear a few milliseconds apart; one side alone for less
# than this is a migration starting, not an orphan.
ORPHAN_GRACE_S = 1.0
POLL_S = 0.2
# How long past the wait fix keeps trying to cancel what is still running.
GIVE_UP_AFTER_S = 10.0


@dataclass
class FixReport:
    """What fix found and did."""

    actions: list[str] = field(default_factory=list)
    cancelled: list[dict[str, Any]] = field(default_factory=list)
    assigned: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing is left that fix could not repair."""
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "ok": self.ok,
            "actions": self.actions,
            "cancelled": self.cancelled,
            "assigned": self.assigned,
            "warnings": self.warnings,
            "problems": self.problems,
        }


@dataclass
class _Seen:
    """One migration as the nodes report it."""

    migration_id: str
    # side -> (address, record) for the sides that report it.
    sides: dict[str, tuple[str, admin_pb2.MigrationProgress]]
    first_seen: float
    last_progress: float
    fingerprint: tuple[Any, ...] = ()
    orphan_since: float | None = None


def fix_cluster(
    seed: str,
    *,
    timeout: float = 5.0,
    wait_s: float = 30.0,
    stuck_after_s: float = DEFAULT_STUCK_AFTER_S,
    progress: Progress = ignore_progress,
) -> FixReport:
    """Repair what can be repaired; see the module docstring."""
    report = FixReport()
    with NodeHandle.open(seed, timeout) as node:
        state = node.state()
    if not state.cluster_enabled:
        raise OperationError(f"{seed} is not in cluster mode; there is nothing to fix")
    addresses = {p.node.id: p.node.address for p in state.peers if p.node.address}
    _settle_migrations(addresses, report, timeout, wait_s, stuck_after_s, progress)
    _repair_slots(seed, report, timeout, wait_s, progress)
    progress("waiting for every node to agree")
    awaited = wait_converged(seed, timeout, wait_s, progress, skip_unreachable=True)
    if awaited is not None:
        report.problems.append(f"the nodes did not agree within {wait_s:g}s ({awaited})")
    _final_findings(seed, report, timeout)
    if not report.actions:
        report.actions.append("nothing to fix")
    return report


# ---- migrations ---------------------------------------------------------------------------


def _settle_migrations(
    addresses: Mapping[str, str],
    report: FixReport,
    timeout: float,
    wait_s: float,
    stuck_after_s: float,
    progress: Progress,
) -> None:
    seen: dict[str, _Seen] = {}
    deadline = time.monotonic() + wait_s
    while True:
        now = time.monotonic()
        replies = ask_all(list(addresses.values()), timeout, migration_status)
        reachable = {a for a, r in replies.items() if not isinstance(r, OperationError)}
        current: dict[str, dict[str, tuple[str, admin_pb2.MigrationProgress]]] = {}
        for address, reply in replies.items():
            if isinstance(reply, OperationError):
                continue
            for record in reply:
                current.setdefault(record.migration_id, {})[record.side] = (address, record)
        running = {
            mid: sides
            for mid, sides in current.items()
            if any(r.state in ACTIVE_STATES for _, r in sides.values())
        }
        for mid in list(seen):
            if mid not in running:
                del seen[mid]
        if not running:
            return
        for mid, sides in running.items():
            entry = seen.get(mid)
            if entry is None:
                entry = seen[mid] = _Seen(mid, sides, now, now)
            entry.sides = sides
            fingerprint = tuple(
                sorted((side, r.state, r.slots_done, r.keys) for side, (_, r) in sides.items())
            )
            if fingerprint != entry.fingerprint:
                entry.fingerprint, entry.last_progress = fingerprint, now
            why = _orphan_reason(entry, addresses, reachable)
            if why is None:
                entry.orphan_since = None
            elif entry.orphan_since is None:
                entry.orphan_since = now
            orphaned_for = now - entry.orphan_since if entry.orphan_since is not None else 0.0
            if why is not None and orphaned_for >= ORPHAN_GRACE_S:
                _cancel(entry, f"orphaned: {why}", report, reachable, timeout)
            elif now - entry.last_progress >= stuck_after_s:
                _cancel(
                    entry, f"stuck: no progress for {stuck_after_s:g}s", report, reachable, timeout
                )
            elif now >= deadline:
                _cancel(entry, f"still running after {wait_s:g}s", report, reachable, timeout)
        if now >= deadline + GIVE_UP_AFTER_S:
            ids = ", ".join(sorted(running))
            report.problems.append(f"migrations {ids} could not be cancelled")
            return
        progress(f"{len(running)} migrations still running; waiting for them to finish or stall")
        time.sleep(POLL_S)


def _orphan_reason(entry: _Seen, addresses: Mapping[str, str], reachable: set[str]) -> str | None:
    """Why only one side is left of this migration, or None while both take part."""
    active = {side: (a, r) for side, (a, r) in entry.sides.items() if r.state in ACTIVE_STATES}
    if len(active) == 2:
        return None
    ((side, (_, record)),) = active.items()
    other_side = "source" if side == "target" else "target"
    other_id = record.source_id if other_side == "source" else record.target_id
    other_address = addresses.get(other_id)
    who = f"{other_address or '?'} ({short_id(other_id)})"
    if other_address is None:
        return f"its {other_side} {short_id(other_id)} is not a known node"
    if other_address not in reachable:
        return f"its {other_side} {who} does not answer"
    other = entry.sides.get(other_side)
    if other is None:
        return f"its {other_side} {who} does not know it"
    return f"its {other_side} {who} has ended it ({STATE_NAMES[other[1].state]})"


def _cancel(
    entry: _Seen, reason: str, report: FixReport, reachable: set[str], timeout: float
) -> None:
    """Cancel on the target if it answers (it drops its copy), else on the source."""
    if any(c["migration_id"] == entry.migration_id for c in report.cancelled):
        return
    order = [s for s in ("target", "source") if s in entry.sides]
    for side in order:
        address, record = entry.sides[side]
        if address not in reachable or record.state not in ACTIVE_STATES:
            continue
        try:
            with NodeHandle.open(address, timeout) as node:
                reply = node.call(
                    "CancelMigration",
                    admin_pb2.CancelMigrationRequest(migration_id=entry.migration_id),
                )
        except OperationError:
            continue
        assert isinstance(reply, admin_pb2.CancelMigrationReply)
        if not reply.cancelled:
            continue
        slots = [(r.start, r.end) for r in record.slots]
        report.cancelled.append(
            {
                "migration_id": entry.migration_id,
                "address": address,
                "side": side,
                "source_id": record.source_id or None,
                "target_id": record.target_id,
                "slots": [list(r) for r in slots],
                "reason": reason,
            }
        )
        report.actions.append(
            f"cancelled migration {entry.migration_id} on its {side} {address} "
            f"(slots {format_ranges(slots)}): {reason}"
        )
        return


# ---- slots --------------------------------------------------------------------------------


def _views(
    seed: str, timeout: float
) -> tuple[admin_pb2.ClusterStateReply, dict[str, admin_pb2.ClusterStateReply]]:
    with NodeHandle.open(seed, timeout) as node:
        state = node.state()
    addresses = [p.node.address for p in state.peers if p.node.address]
    views = {
        a: v
        for a, v in ask_all(addresses, timeout, NodeHandle.state).items()
        if not isinstance(v, OperationError)
    }
    return state, views


def _repair_slots(
    seed: str, report: FixReport, timeout: float, wait_s: float, progress: Progress
) -> None:
    state, views = _views(seed, timeout)
    owners = _owners_by_slot(views.values())
    unowned = [s for s in range(SLOT_COUNT) if not owners[s]]
    disputed = [s for s in range(SLOT_COUNT) if len(owners[s]) > 1]
    if disputed:
        progress(
            f"{counted(len(disputed), 'slot')} with different owners in different views; waiting"
        )
        wait_converged(seed, timeout, wait_s, progress, skip_unreachable=True)
        state, views = _views(seed, timeout)
        owners = _owners_by_slot(views.values())
        unowned = [s for s in range(SLOT_COUNT) if not owners[s]]
        disputed = [s for s in range(SLOT_COUNT) if len(owners[s]) > 1]
    if not unowned and not disputed:
        return
    primaries = _live_primaries(state, views)
    if not primaries:
        report.problems.append("no primary answers, so no node can take the slots")
        return
    keys = _keys_held(primaries, unowned + disputed, timeout)
    if unowned:
        _assign_unowned(unowned, primaries, keys, report, timeout)
    if disputed:
        epochs = {p.node.id: p.node.config_epoch for p in state.peers}
        _settle_disputes(disputed, owners, primaries, keys, epochs, report, timeout)


def _owners_by_slot(views: Iterable[admin_pb2.ClusterStateReply]) -> list[set[str]]:
    owners: list[set[str]] = [set() for _ in range(SLOT_COUNT)]
    for view in views:
        for slot, owner in enumerate(owner_table(view)):
            if owner is not None:
                owners[slot].add(owner)
    return owners


def _live_primaries(
    state: admin_pb2.ClusterStateReply, views: Mapping[str, admin_pb2.ClusterStateReply]
) -> dict[str, admin_pb2.PeerState]:
    """Primaries that answer, by id, as the seed sees them."""
    answering = {v.myself for v in views.values()}
    return {
        p.node.id: p
        for p in state.peers
        if is_primary(p) and p.node.id in answering and "fail" not in p.flags
    }


def _keys_held(
    primaries: Mapping[str, admin_pb2.PeerState], slots: list[int], timeout: float
) -> dict[int, dict[str, int]]:
    """Slot -> {primary id: keys it holds there}, for the given slots."""
    if not slots:
        return {}
    ranges = [cache_pb2.SlotRange(start=a, end=b) for a, b in to_ranges(slots)]
    by_address = {p.node.address: node_id for node_id, p in primaries.items()}

    def ask(node: NodeHandle) -> admin_pb2.SlotStatsReply:
        reply = node.call("SlotStats", admin_pb2.SlotStatsRequest(ranges=ranges))
        assert isinstance(reply, admin_pb2.SlotStatsReply)
        return reply

    held: dict[int, dict[str, int]] = {}
    for address, reply in ask_all(list(by_address), timeout, ask).items():
        if isinstance(reply, OperationError):
            continue
        for entry in reply.slots:
            if entry.keys:
                held.setdefault(entry.slot, {})[by_address[address]] = entry.keys
    return held


def _assign_unowned(
    unowned: list[int],
    primaries: Mapping[str, admin_pb2.PeerState],
    keys: Mapping[int, Mapping[str, int]],
    report: FixReport,
    timeout: float,
) -> None:
    counts = {
        node_id: sum(b - a + 1 for a, b in ranges_of(p.node)) for node_id, p in primaries.items()
    }
    chosen: dict[str, list[int]] = {}
    reasons: dict[str, set[str]] = {}
    for slot in unowned:
        holders = keys.get(slot)
        if holders:
            node_id = max(holders, key=lambda n: (holders[n], n))
            why = "it holds keys of these slots"
        else:
            node_id = min(counts, key=lambda n: (counts[n], n))
            why = "it had the fewest slots"
        counts[node_id] += 1
        chosen.setdefault(node_id, []).append(slot)
        reasons.setdefault(node_id, set()).add(why)
    for node_id, slots in chosen.items():
        _give(primaries[node_id], slots, "; ".join(sorted(reasons[node_id])), report, timeout)


def _give(
    peer: admin_pb2.PeerState, slots: list[int], why: str, report: FixReport, timeout: float
) -> None:
    """AddSlots (the slots are free in its view), or ClaimSlots if its view disagrees."""
    ranges = to_ranges(slots)
    request = [cache_pb2.SlotRange(start=a, end=b) for a, b in ranges]
    how = "AddSlots"
    try:
        with NodeHandle.open(peer.node.address, timeout) as node:
            try:
                node.call("AddSlots", admin_pb2.AddSlotsRequest(ranges=request))
            except OperationError as exc:
                if "already owned" not in str(exc):
                    raise
                how = "ClaimSlots"
                node.call("ClaimSlots", admin_pb2.ClaimSlotsRequest(ranges=request))
    except OperationError as exc:
        report.problems.append(
            f"could not give {counted(len(slots), 'slot')} ({format_ranges(ranges)}) to "
            f"{peer.node.address}: {exc}"
        )
        return
    report.assigned.append(
        {
            "node_id": peer.node.id,
            "address": peer.node.address,
            "slots": [list(r) for r in ranges],
            "count": len(slots),
            "how": how,
            "reason": why,
        }
    )
    report.actions.append(
        f"gave {counted(len(slots), 'slot')} without an owner ({format_ranges(ranges)}) to "
        f"{peer.node.address} ({short_id(peer.node.id)}) with {how}: {why}"
    )


def _settle_disputes(
    disputed: list[int],
    owners: list[set[str]],
    primaries: Mapping[str, admin_pb2.PeerState],
    keys: Mapping[int, Mapping[str, int]],
    epochs: Mapping[str, int],
    report: FixReport,
    timeout: float,
) -> None:
    chosen: dict[str, list[int]] = {}
    for slot in disputed:
        candidates = [n for n in owners[slot] if n in primaries]
        if not candidates:
            report.problems.append(
                f"slot {slot} is claimed only by nodes that do not answer: "
                + ", ".join(short_id(n) for n in sorted(owners[slot]))
            )
            continue
        held = keys.get(slot, {})
        best = max(candidates, key=lambda n: (held.get(n, 0), epochs.get(n, 0), n))
        chosen.setdefault(best, []).append(slot)
    for node_id, slots in chosen.items():
        peer = primaries[node_id]
        ranges = to_ranges(slots)
        request = [cache_pb2.SlotRange(start=a, end=b) for a, b in ranges]
        try:
            with NodeHandle.open(peer.node.address, timeout) as node:
                node.call("ClaimSlots", admin_pb2.ClaimSlotsRequest(ranges=request))
        except OperationError as exc:
            report.problems.append(f"could not settle slots {format_ranges(ranges)}: {exc}")
            continue
        report.assigned.append(
            {
                "node_id": node_id,
                "address": peer.node.address,
                "slots": [list(r) for r in ranges],
                "count": len(slots),
                "how": "ClaimSlots",
                "reason": "the views disagreed; it holds the most keys of them",
            }
        )
        report.actions.append(
            f"{peer.node.address} ({short_id(node_id)}) claimed "
            f"{counted(len(slots), 'slot')} the views disagreed on ({format_ranges(ranges)})"
        )


# ---- what is left ---------------------------------------------------------------------------


def _final_findings(seed: str, report: FixReport, timeout: float) -> None:
    state, views = _views(seed, timeout)
    answering = {v.myself for v in views.values()}
    for peer in state.peers:
        if peer.node.id in answering:
            continue
        who = f"{peer.node.address} ({short_id(peer.node.id)})"
        if peer.node.slots and not is_replica(peer):
            report.problems.append(
                f"{who} owns {sum(r.end - r.start + 1 for r in peer.node.slots)} slots but does "
                "not answer: restart it, or fail over to one of its replicas"
            )
        else:
            report.warnings.append(
                f"{who} does not answer; it owns no slots (restart it, or remove it with "
                "clusterctl del-node)"
            )
    if state.slots_assigned != SLOT_COUNT:
        report.problems.append(f"{SLOT_COUNT - state.slots_assigned} slots still have no owner")
    running = {
        a: [m.migration_id for m in r if m.state in ACTIVE_STATES]
        for a, r in ask_all(list(views), timeout, migration_status).items()
        if not isinstance(r, OperationError)
    }
    for address, ids in running.items():
        if ids:
            report.problems.append(f"{address} still runs migrations {', '.join(ids)}")
    # Keys a primary holds for slots it does not own: left over, never served.
    owned = {
        p.node.id: {s for a, b in ranges_of(p.node) for s in range(a, b + 1)} for p in state.peers
    }

    def stats(node: NodeHandle) -> admin_pb2.SlotStatsReply:
        reply = node.call("SlotStats", admin_pb2.SlotStatsRequest())
        assert isinstance(reply, admin_pb2.SlotStatsReply)
        return reply

    primaries = {
        v.myself: a
        for a, v in views.items()
        if not any(p.node.id == v.myself and is_replica(p) for p in v.peers)
    }
    results = ask_all(list(primaries.values()), timeout, stats)
    for node_id, address in primaries.items():
        got = results[address]
        if isinstance(got, OperationError):
            continue
        stray = [e for e in got.slots if e.keys and e.slot not in owned.get(node_id, set())]
        if stray:
            report.warnings.append(
                f"{address} ({short_id(node_id)}) holds "
                f"{counted(sum(e.keys for e in stray), 'key')} in "
                f"{counted(len(stray), 'slot')} it does not own; they are not served"
            )
