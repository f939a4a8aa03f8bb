"""Moving slots between primaries: the cluster as the planner needs it, and the batch runner.

``reshard`` and ``rebalance`` plan with :mod:`slotcache.ctl.rebalance_plan`
and execute here. Each batch of slots is one atomic migration
(ARCHITECTURE §5): ``ImportSlots`` on the target, then ``MigrationStatus``
polled until it is DONE (the target owns the slots) or FAILED (the source
kept them and the target dropped its copy). Nothing is ever half-moved, so
stopping between batches, or cancelling the batch in flight, always leaves
a consistent cluster.

Stopping: the first Ctrl-C (SIGINT) lets the batch in flight finish and
starts no other; a second one cancels the batch in flight. Either way the
runner returns what it did, and the command exits 130.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Protocol

from slotcache.contract import SLOT_COUNT, to_ranges
from slotcache.ctl.agreement import lagging, role_map, slot_map, waiting_text
from slotcache.ctl.rebalance_plan import (
    Move,
    PrimaryLoad,
    SlotStat,
    batches,
)
from slotcache.ctl.replicas import label, refuse_proxy
from slotcache.ctl.roles import is_primary, is_replica
from slotcache.ctl.rpc import (
    NodeHandle,
    OperationError,
    Progress,
    ask_all,
    fetch_states,
    ignore_progress,
    poll_until,
)
from slotcache.ctl.views import ranges_of, short_id
from slotcache.ctl.wording import counted
from slotcache.v1 import admin_pb2, cache_pb2

# Measured on 2 cores with 200k keys of 100 bytes over 3 primaries (about 12 keys per
# slot): 256 slots x 2 in flight moved ~70k keys/s, 512 x 2 ~110k keys/s, 1024 x 2
# ~120k keys/s. Each migration has fixed costs (ImportSlots, the stream set-up, the
# handoff, the claim and its fsync) of a few tens of milliseconds, which smaller batches
# pay more often; bigger ones keep more keys in flight, and the source drops a moved
# batch's keys in one step of its event loop (a stall of a few microseconds per key).
DEFAULT_BATCH_SLOTS = 512
DEFAULT_BATCH_KEYS = 10_000
DEFAULT_PARALLEL = 1
# MigrationStatus is cheap; a batch of a few thousand keys takes tens of milliseconds.
STATUS_POLL_S = 0.025
# A failed batch is clean (the source kept the slots), so it can simply be tried again.
BATCH_ATTEMPTS = 3
RETRY_PAUSE_S = 0.2
ACTIVE_STATES = (
    admin_pb2.MIGRATION_STATE_SNAPSHOT,
    admin_pb2.MIGRATION_STATE_STREAMING,
    admin_pb2.MIGRATION_STATE_HANDOFF,
)
STATE_NAMES = {
    admin_pb2.MIGRATION_STATE_UNSPECIFIED: "unknown",
    admin_pb2.MIGRATION_STATE_SNAPSHOT: "snapshot",
    admin_pb2.MIGRATION_STATE_STREAMING: "streaming",
    admin_pb2.MIGRATION_STATE_HANDOFF: "handoff",
    admin_pb2.MIGRATION_STATE_DONE: "done",
    admin_pb2.MIGRATION_STATE_FAILED: "failed",
}


# ---- the cluster as the planner sees it ---------------------------------------------------


@dataclass(frozen=True)
class ClusterView:
    """Every node of a healthy cluster, as the seed and all the others agree on it."""

    seed: str
    state: admin_pb2.ClusterStateReply
    # Node id -> client address, for every node the seed knows.
    addresses: dict[str, str]
    # Primaries (slot owners and empty ones) in the seed's view.
    primaries: tuple[admin_pb2.PeerState, ...]

    def address_of(self, node_id: str) -> str:
        """The client address of a node."""
        return self.addresses[node_id]

    def loads(self) -> list[PrimaryLoad]:
        """Each primary and its slots, for the planner."""
        return [
            PrimaryLoad(p.node.id, tuple(s for a, b in ranges_of(p.node) for s in range(a, b + 1)))
            for p in self.primaries
        ]

    def name(self, node_id: str) -> str:
        """``address (short id)``."""
        return f"{self.addresses.get(node_id, '?')} ({short_id(node_id)})"


def load_cluster(seed: str, timeout: float, wait_s: float = 10.0) -> ClusterView:
    """The cluster, once every node answers and agrees; refuse (changing nothing) otherwise.

    Moving slots needs every primary to answer and every view to agree on
    who owns what: a node that still has an older view would refuse the
    migration, or serve slots it no longer owns. Views that differ for a
    moment (gossip) are waited for, up to ``wait_s``.
    """
    last: list[str] = []

    def pending() -> str | None:
        seed_state = NodeHandle.open(seed, timeout)
        try:
            state = seed_state.state()
        finally:
            seed_state.close()
        problems = _health_problems(seed, state, timeout)
        last[:] = problems
        return "; ".join(problems) if problems else None

    if poll_until(pending, wait_s) is not None:
        raise OperationError(
            "the cluster is not in a state to move slots: "
            + "; ".join(last[:5])
            + " (see clusterctl check and clusterctl fix); nothing was changed"
        )
    state = NodeHandle.open(seed, timeout)
    try:
        reply = state.state()
    finally:
        state.close()
    addresses = {p.node.id: p.node.address for p in reply.peers}
    return ClusterView(seed, reply, addresses, primaries_of(reply))


def primaries_of(state: admin_pb2.ClusterStateReply) -> tuple[admin_pb2.PeerState, ...]:
    """The nodes slots may move between, by first slot: primaries, never replicas or proxies."""
    return tuple(
        sorted(
            (p for p in state.peers if is_primary(p)),
            key=lambda p: (min((r.start for r in p.node.slots), default=SLOT_COUNT), p.node.id),
        )
    )


def _health_problems(seed: str, state: admin_pb2.ClusterStateReply, timeout: float) -> list[str]:
    if not state.cluster_enabled:
        return [f"{seed} is not in cluster mode"]
    problems = []
    if not state.cluster_ok:
        problems.append(f"{seed} reports the cluster as down")
    if state.slots_assigned != SLOT_COUNT:
        problems.append(f"only {state.slots_assigned} of {SLOT_COUNT} slots have an owner")
    failing = [label(p) for p in state.peers if {"fail", "pfail"} & set(p.flags)]
    if failing:
        problems.append(f"{', '.join(failing)} flagged as failing")
    addresses = [p.node.address for p in state.peers if p.node.id != state.myself]
    states = fetch_states(addresses, timeout)
    views = [state]
    for address, got in states.items():
        if isinstance(got, OperationError):
            problems.append(f"{address} does not answer")
        else:
            views.append(got)
            if not got.cluster_ok:
                problems.append(f"{address} reports the cluster as down")
    shapes = {(slot_map(v), role_map(v)) for v in views}
    if len(shapes) > 1:
        problems.append("the nodes do not agree yet on who owns which slots")
    if not problems:
        busy = active_migrations([p.node.address for p in state.peers], timeout)
        for address, records in busy.items():
            ids = ", ".join(m.migration_id for m in records)
            problems.append(f"{address} is migrating slots ({ids})")
    return problems


def active_migrations(
    addresses: Sequence[str], timeout: float
) -> dict[str, list[admin_pb2.MigrationProgress]]:
    """The migrations still running, by the node that reports them."""
    replies = ask_all(addresses, timeout, migration_status)
    out: dict[str, list[admin_pb2.MigrationProgress]] = {}
    for address, reply in replies.items():
        if isinstance(reply, OperationError):
            continue
        running = [m for m in reply if m.state in ACTIVE_STATES]
        if running:
            out[address] = running
    return out


def migration_status(node: NodeHandle, migration_id: str = "") -> list[admin_pb2.MigrationProgress]:
    """The migrations a node takes part in (or the one named)."""
    reply = node.call(
        "MigrationStatus", admin_pb2.MigrationStatusRequest(migration_id=migration_id)
    )
    assert isinstance(reply, admin_pb2.MigrationStatusReply)
    return list(reply.migrations)


def slot_stats(view: ClusterView, timeout: float) -> dict[int, SlotStat]:
    """Keys and memory of every non-empty slot, each from the primary that owns it."""
    owned = {
        p.node.id: {s for a, b in ranges_of(p.node) for s in range(a, b + 1)}
        for p in view.primaries
    }

    def ask(node: NodeHandle) -> admin_pb2.SlotStatsReply:
        reply = node.call("SlotStats", admin_pb2.SlotStatsRequest())
        assert isinstance(reply, admin_pb2.SlotStatsReply)
        return reply

    by_address = {view.address_of(p.node.id): p.node.id for p in view.primaries if p.node.slots}
    replies = ask_all(list(by_address), timeout, ask)
    stats: dict[int, SlotStat] = {}
    for address, reply in replies.items():
        if isinstance(reply, OperationError):
            raise reply
        mine = owned[by_address[address]]
        for entry in reply.slots:
            if entry.slot in mine:
                stats[entry.slot] = SlotStat(entry.keys, entry.bytes)
    return stats


def resolve_node(state: admin_pb2.ClusterStateReply, wanted: str, seed: str) -> admin_pb2.PeerState:
    """The node whose id is ``wanted`` or starts with it (``nodes`` shows 8 digits)."""
    prefix = wanted.lower()
    matches = [p for p in state.peers if p.node.id.startswith(prefix)]
    if not matches:
        raise OperationError(
            f"no node of the cluster has an id starting with {wanted} "
            f"(see clusterctl nodes {seed}); nothing was changed"
        )
    if len(matches) > 1:
        listed = ", ".join(sorted(label(p) for p in matches))
        raise OperationError(
            f"{wanted} matches {len(matches)} nodes ({listed}); give more digits; "
            "nothing was changed"
        )
    return matches[0]


def resolve_primary(view: ClusterView, wanted: str, role: str) -> str:
    """The full id of the primary ``wanted`` names; ``role`` says what it is for in messages."""
    peer = resolve_node(view.state, wanted, view.seed)
    refuse_proxy(peer, role)
    if is_replica(peer):
        raise OperationError(
            f"{label(peer)} is a replica (of {short_id(peer.node.primary_id)}); only a primary "
            f"can be {role}; nothing was changed"
        )
    return peer.node.id


# ---- stopping between batches -------------------------------------------------------------


@dataclass
class StopRequest:
    """What Ctrl-C asked for: finish the batch in flight (once), or cancel it (twice)."""

    presses: int = 0
    event: threading.Event = field(default_factory=threading.Event)

    @property
    def requested(self) -> bool:
        """Start no new batch."""
        return self.presses > 0

    @property
    def cancel(self) -> bool:
        """Cancel the batch in flight too."""
        return self.presses > 1

    def press(self) -> None:
        """One more Ctrl-C."""
        self.presses += 1
        self.event.set()


@contextlib.contextmanager
def stop_on_sigint(on_press: Progress = ignore_progress) -> Iterator[StopRequest]:
    """While the block runs, SIGINT asks the runner to stop instead of raising KeyboardInterrupt.

    Off the main thread (where Python cannot catch signals) the block runs
    without it.
    """
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.press()
        if stop.cancel:
            on_press("cancelling the batch in flight (it is rolled back; nothing is lost)")
        else:
            on_press("stopping after the batch in flight; press Ctrl-C again to cancel it instead")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


# ---- running migrations ---------------------------------------------------------------


@dataclass(frozen=True)
class BatchResult:
    """One migration: what it moved, or why it did not."""

    migration_id: str
    source: str
    target: str
    slots: tuple[int, ...]
    keys: int
    bytes: int
    seconds: float
    # "done", "failed" or "cancelled".
    outcome: str
    error: str = ""
    # How many migrations it took (a failed one is clean and is tried again).
    attempts: int = 1


@dataclass
class MoveOutcome:
    """What a run of migrations did."""

    planned_slots: int
    batches: list[BatchResult] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    error: str = ""
    # Wall-clock times (Unix seconds) of the first migration's start and the last one's end.
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def done(self) -> list[BatchResult]:
        """The batches that moved their slots."""
        return [b for b in self.batches if b.outcome == "done"]

    @property
    def slots_moved(self) -> int:
        """Slots now owned by their target."""
        return sum(len(b.slots) for b in self.done)

    @property
    def keys_moved(self) -> int:
        """Keys the targets received in the batches that completed."""
        return sum(b.keys for b in self.done)

    @property
    def bytes_moved(self) -> int:
        """Bytes of keys and values the targets received in those batches."""
        return sum(b.bytes for b in self.done)

    @property
    def keys_per_s(self) -> float:
        """Keys moved per second of the whole run."""
        return self.keys_moved / self.seconds if self.seconds > 0 else 0.0


class MoveProgress(Protocol):
    """Where the runner reports progress (a rich bar, log lines, or nothing)."""

    def update(self, slots_done: int, keys: int, note: str) -> None:
        """Totals so far (the batch in flight included) and what is happening."""

    def batch_done(self, index: int, count: int, result: BatchResult) -> None:
        """A batch finished (moved or not)."""


class NoProgress:
    """A MoveProgress that shows nothing."""

    def update(self, slots_done: int, keys: int, note: str) -> None:
        """Ignore."""

    def batch_done(self, index: int, count: int, result: BatchResult) -> None:
        """Ignore."""


@dataclass
class _Flight:
    """A migration under way."""

    index: int
    batch: Move
    attempt: int
    migration_id: str
    started: float
    slots_done: int = 0
    keys: int = 0
    cancelled: bool = False


class Runner:
    """Executes moves in batches, each one atomic migration, ``parallel`` of them at a time.

    Running two or three at once hides each migration's fixed costs (the
    ImportSlots call, the stream set-up, the claim and its fsync, the status
    polls) behind the others' copying. The batches in flight move disjoint
    slots, so they never interfere.
    """

    def __init__(
        self,
        addresses: Mapping[str, str],
        timeout: float,
        progress: MoveProgress | None = None,
        stop: StopRequest | None = None,
        names: Mapping[str, str] | None = None,
    ) -> None:
        self._addresses = addresses
        self._timeout = timeout
        self._progress = progress or NoProgress()
        self._stop = stop or StopRequest()
        self._names = names or {}
        self._handles: dict[str, NodeHandle] = {}

    def _node(self, node_id: str) -> NodeHandle:
        handle = self._handles.get(node_id)
        if handle is None:
            handle = self._handles[node_id] = NodeHandle.open(
                self._addresses[node_id], self._timeout
            )
        return handle

    def _name(self, node_id: str) -> str:
        return self._names.get(node_id) or f"{self._addresses.get(node_id)} ({short_id(node_id)})"

    def close(self) -> None:
        """Close every connection."""
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()

    def run(
        self,
        moves: Sequence[Move],
        batch_slots: int = DEFAULT_BATCH_SLOTS,
        stats: Mapping[int, SlotStat] | None = None,
        parallel: int = 1,
        batch_keys: int | None = None,
    ) -> MoveOutcome:
        """Run every move in batches until done, stopped, or a batch fails for good.

        After a failure (or a stop request) no new batch starts; the ones in
        flight are followed to their end, so the outcome lists every slot
        that moved.
        """
        work = [b for m in moves for b in batches(m, batch_slots, stats, batch_keys)]
        outcome = MoveOutcome(planned_slots=sum(len(b.slots) for b in work))
        outcome.started_at = time.time()
        started = time.monotonic()
        queue: deque[tuple[int, Move, int]] = deque((i, b, 1) for i, b in enumerate(work, 1))
        flights: list[_Flight] = []
        count = len(work)
        try:
            while queue or flights:
                while (
                    queue
                    and len(flights) < parallel
                    and not self._stop.requested
                    and not outcome.error
                ):
                    index, batch, attempt = queue.popleft()
                    flight = self._start(index, batch, attempt, outcome)
                    if flight is not None:
                        flights.append(flight)
                    elif not outcome.error:
                        queue.appendleft((index, batch, attempt + 1))
                if not flights:
                    break
                for flight in list(flights):
                    if self._poll(flight, count, queue, outcome):
                        flights.remove(flight)
                self._show(outcome, flights, count)
                if flights:
                    self._stop.event.wait(STATUS_POLL_S)
            outcome.interrupted = self._stop.requested and len(outcome.done) < len(work)
        finally:
            outcome.seconds = time.monotonic() - started
            outcome.finished_at = time.time()
            self.close()
        return outcome

    def _start(self, index: int, batch: Move, attempt: int, outcome: MoveOutcome) -> _Flight | None:
        """ImportSlots on the target; None if it was refused (then maybe tried again)."""
        ranges = [cache_pb2.SlotRange(start=a, end=b) for a, b in to_ranges(batch.slots)]
        started = time.monotonic()
        try:
            reply = self._node(batch.target).call(
                "ImportSlots", admin_pb2.ImportSlotsRequest(source_id=batch.source, ranges=ranges)
            )
        except OperationError as exc:
            result = self._result(batch, "", started, "failed", str(exc), attempts=attempt)
            if attempt >= BATCH_ATTEMPTS or "cannot reach" in str(exc):
                outcome.batches.append(result)
                outcome.error = result.error
            else:
                time.sleep(RETRY_PAUSE_S * attempt)
            return None
        assert isinstance(reply, admin_pb2.ImportSlotsReply)
        return _Flight(index, batch, attempt, reply.migration_id, started)

    def _poll(
        self,
        flight: _Flight,
        count: int,
        queue: deque[tuple[int, Move, int]],
        outcome: MoveOutcome,
    ) -> bool:
        """Follow one migration; True once it has ended (and is accounted for)."""
        batch = flight.batch
        try:
            records = migration_status(self._node(batch.target), flight.migration_id)
        except OperationError as exc:
            result = self._target_lost(flight, str(exc))
        else:
            record = records[0] if records else None
            if record is not None and record.state in ACTIVE_STATES:
                flight.slots_done, flight.keys = record.slots_done, record.keys
                if self._stop.cancel and not flight.cancelled:
                    flight.cancelled = True
                    with contextlib.suppress(OperationError):
                        self._node(batch.target).call(
                            "CancelMigration",
                            admin_pb2.CancelMigrationRequest(migration_id=flight.migration_id),
                        )
                return False
            result = self._ended(flight, record)
        if (
            result.outcome == "failed"
            and not self._stop.requested
            and not outcome.error
            and flight.attempt < BATCH_ATTEMPTS
            and _retryable(result)
        ):
            self._progress.update(
                *self._totals(outcome, []),
                f"batch {flight.index}/{count} failed ({result.error}); trying it again",
            )
            queue.appendleft((flight.index, batch, flight.attempt + 1))
            return True
        outcome.batches.append(result)
        self._progress.batch_done(flight.index, count, result)
        if result.outcome == "failed" and not outcome.error:
            outcome.error = result.error
        return True

    def _ended(self, flight: _Flight, record: admin_pb2.MigrationProgress | None) -> BatchResult:
        batch = flight.batch
        if record is None:
            return self._result(
                batch,
                flight.migration_id,
                flight.started,
                "failed",
                "the target forgot the migration",
                attempts=flight.attempt,
            )
        if record.state == admin_pb2.MIGRATION_STATE_DONE:
            return self._result(
                batch,
                flight.migration_id,
                flight.started,
                "done",
                keys=record.keys,
                size=record.bytes,
                attempts=flight.attempt,
            )
        outcome = "cancelled" if flight.cancelled and record.error == "cancelled" else "failed"
        return self._result(
            batch,
            flight.migration_id,
            flight.started,
            outcome,
            record.error,
            attempts=flight.attempt,
        )

    def _totals(self, outcome: MoveOutcome, flights: Sequence[_Flight]) -> tuple[int, int]:
        slots = outcome.slots_moved + sum(f.slots_done for f in flights)
        keys = outcome.keys_moved + sum(f.keys for f in flights)
        return slots, keys

    def _show(self, outcome: MoveOutcome, flights: Sequence[_Flight], count: int) -> None:
        if not flights:
            return
        slots, keys = self._totals(outcome, flights)
        first = flights[0]
        what = (
            f"batch {first.index}/{count}: {counted(len(first.batch.slots), 'slot')} "
            f"{short_id(first.batch.source)} -> {short_id(first.batch.target)}"
        )
        if len(flights) > 1:
            what += f" (+{len(flights) - 1} in flight)"
        if self._stop.requested:
            what += "; stopping after the batches in flight"
        self._progress.update(slots, keys, what)

    def _target_lost(self, flight: _Flight, error: str) -> BatchResult:
        """The target stopped answering: make sure the source is not left holding the batch.

        The source notices a broken stream by itself and keeps the slots;
        cancelling there as well covers a target that hangs without closing
        the connection.
        """
        batch, migration_id = flight.batch, flight.migration_id
        with contextlib.suppress(OperationError):
            source = self._node(batch.source)
            for record in migration_status(source, migration_id):
                if record.state in ACTIVE_STATES:
                    source.call(
                        "CancelMigration",
                        admin_pb2.CancelMigrationRequest(migration_id=migration_id),
                    )
        return self._result(
            batch,
            migration_id,
            flight.started,
            "failed",
            f"the target {self._name(batch.target)} stopped answering ({error}); "
            f"{self._name(batch.source)} kept the slots",
            attempts=flight.attempt,
        )

    @staticmethod
    def _result(
        batch: Move,
        migration_id: str,
        started: float,
        outcome: str,
        error: str = "",
        keys: int = 0,
        size: int = 0,
        attempts: int = 1,
    ) -> BatchResult:
        return BatchResult(
            migration_id,
            batch.source,
            batch.target,
            batch.slots,
            keys,
            size,
            time.monotonic() - started,
            outcome,
            error,
            attempts,
        )


def _retryable(result: BatchResult) -> bool:
    """A failure worth another attempt: both nodes answered, only this attempt failed."""
    return bool(result.migration_id) and "stopped answering" not in result.error


# ---- after the moves ----------------------------------------------------------------------


def wait_converged(
    seed: str,
    timeout: float,
    wait_s: float,
    progress: Progress = ignore_progress,
    *,
    skip_unreachable: bool = False,
) -> str | None:
    """Poll until the nodes agree on slots and roles; None, or what still differs.

    Nodes the seed flags as failed are left out; with ``skip_unreachable``,
    so are nodes that do not answer (otherwise they are waited for). The
    progress counts the nodes that have caught up with the newest view (see
    :mod:`slotcache.ctl.agreement`), so it does not fall back while the last
    moves spread by gossip.
    """

    def pending() -> str | None:
        with NodeHandle.open(seed, timeout) as node:
            state = node.state()
        others = [
            p.node.address
            for p in state.peers
            if p.node.id != state.myself and "fail" not in p.flags
        ]
        views, addresses = [state], [seed]
        for address, got in fetch_states(others, timeout).items():
            if isinstance(got, OperationError):
                if skip_unreachable:
                    continue
                return f"{address} does not answer"
            views.append(got)
            addresses.append(address)
        if state.slots_assigned != SLOT_COUNT:
            return f"{SLOT_COUNT - state.slots_assigned} slots have no owner in the view of {seed}"
        behind = lagging(views)
        if not behind:
            return None
        return waiting_text("know the new slot owners and roles", addresses, behind, len(views))

    return poll_until(pending, wait_s, progress)
