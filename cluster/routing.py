"""The request path's one routing decision, and the batch planner built on it.

Every call a node receives (a unary RPC, or one operation of a Pipeline
message) is routed by :func:`decide`: served here, served here as a replica
read, forwarded to one owner, split over several owners, or refused with a
typed error. Redis keeps this in one function (``getNodeByQuery``); keeping
it in one place here is what makes a unary call and the same operation
inside a Pipeline answer alike. :func:`plan_batch` groups a Pipeline
message's decisions into segments that keep the message's order.

Nothing here performs I/O or awaits: the inputs are the operation, its
slots, the caller's options and a read-only :class:`View` of ownership, so
the decision is cheap to test exhaustively against a model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from slotcache.contract import (
    HOPS_KEY,
    MAX_HOPS,
    REDIRECT_KEY,
    REPLICA_READ_KEY,
    TRACEPARENT_KEY,
    Op,
    Reason,
)

from .executor import CommandError

if TYPE_CHECKING:
    from .security.access import Caller

# ---- the caller's options ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallOptions:
    """What the caller asked for, read from request metadata."""

    redirect: bool = False
    hops: int = 0
    replica_read: bool = False
    # The caller's W3C trace context, passed on when the call is forwarded.
    trace: str = ""
    # Who the caller authenticated as (None without users): forwarded calls name them.
    caller: Caller | None = None


def call_options(metadata: Iterable[tuple[str, Any]] | None) -> CallOptions:
    """Parse the routing metadata of a call; a garbled hop count counts as the limit."""
    redirect, hops, replica_read, trace = False, 0, False, ""
    for key, value in metadata or ():
        if key == REDIRECT_KEY:
            redirect = value not in ("", "0", "false")
        elif key == REPLICA_READ_KEY:
            replica_read = value not in ("", "0", "false")
        elif key == HOPS_KEY:
            try:
                hops = int(value)
            except ValueError:
                hops = MAX_HOPS
        elif key == TRACEPARENT_KEY:
            trace = value
    return CallOptions(redirect, max(hops, 0), replica_read, trace)


# ---- what the decision reads -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Owner:
    """The node to send a slot's requests to, with the config epoch of its claim.

    Clients order what they learn about a slot by that epoch, as the nodes do.
    """

    id: str
    address: str
    epoch: int


class View(Protocol):
    """Ownership as the decision needs it, answered from the node's current state."""

    @property
    def ok(self) -> bool:
        """The cluster is in a state to serve requests."""
        ...

    @property
    def allow_reads_when_down(self) -> bool:
        """Owned slots may still be read while the cluster is down."""
        ...

    @property
    def owns_every_slot(self) -> bool:
        """This node serves all slots (a standalone node, or a cluster of one)."""
        ...

    def is_local(self, slot: int) -> bool:
        """This node serves ``slot``."""
        ...

    def owner(self, slot: int) -> Owner | None:
        """Who serves ``slot``; None when nobody does."""
        ...

    def replica_serves(self, slots: Sequence[int]) -> bool:
        """This node replicates the owner of every one of ``slots`` and holds a full copy."""
        ...

    def handing_off(self, slot: int) -> bool:
        """Writes to ``slot`` are held for a migration's handoff."""
        ...


# ---- the decision ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Local:
    """Serve here; ``replica`` when this node serves it as a replica of the owner."""

    replica: bool = False


@dataclass(frozen=True, slots=True)
class Forward:
    """Send the whole operation to the node at ``address``."""

    address: str


@dataclass(frozen=True, slots=True)
class Spread:
    """A multi-key operation whose keys live on several nodes.

    ``groups`` maps an address (None for this node) to the indices of the
    keys it serves, in request order.
    """

    groups: dict[str | None, list[int]]


@dataclass(frozen=True, slots=True)
class Refused:
    """Do not run the operation; answer ``error``."""

    error: CommandError


Decision = Local | Forward | Spread | Refused
LOCAL = Local()
LOCAL_REPLICA = Local(replica=True)


def serves_everything(view: View, writes_held: bool) -> bool:
    """Whether :func:`decide` answers LOCAL for every operation right now, whatever its keys.

    True while this node owns every slot, the cluster is ok and no write is
    held: then the request path need not even hash the keys, which keeps a
    standalone node (a cluster of one) as cheap as a node that never routes.
    """
    return not writes_held and view.ok and view.owns_every_slot


def decide(op: Op, slots: Sequence[int], options: CallOptions, view: View) -> Decision:
    """Route one operation whose keys hash to ``slots`` (in key order).

    The order of the checks is the contract: a held write is refused first
    (retryable), then the node serves what it owns while the cluster is ok
    (reads also while down, if allowed), then a replica read, then every
    unserved slot makes the cluster down (as Redis checks every key before
    answering MOVED), then MOVED for the first slot served elsewhere if the
    caller follows redirects, then the hop limit, and only then forwarding.
    """
    if op.writes:
        for slot in slots:
            if view.handing_off(slot):
                return Refused(handoff_pending(slot))
    is_local = view.is_local
    local = all(is_local(s) for s in slots)
    if local and (view.ok or (not op.writes and view.allow_reads_when_down)):
        return LOCAL
    if not op.writes and options.replica_read and view.replica_serves(slots):
        return LOCAL_REPLICA
    if not view.ok:
        return Refused(cluster_down("the cluster is down"))
    owners: list[Owner | None] = []  # None: served here
    for slot in slots:
        if is_local(slot):
            owners.append(None)
            continue
        owner = view.owner(slot)
        if owner is None:
            return Refused(cluster_down(f"slot {slot} is not served by any node"))
        owners.append(owner)
    if options.redirect:
        for slot, owner in zip(slots, owners, strict=True):
            if owner is not None:
                return Refused(moved(slot, owner))
    if options.hops >= MAX_HOPS:
        return Refused(hop_limit(slots[0]))
    groups: dict[str | None, list[int]] = {}
    for i, owner in enumerate(owners):
        groups.setdefault(owner.address if owner is not None else None, []).append(i)
    if len(groups) == 1:
        (address,) = groups
        assert address is not None  # an all-local operation was served above
        return Forward(address)
    return Spread(groups)


# ---- Pipeline messages ----------------------------------------------------------------


@dataclass(slots=True)
class Segment:
    """Operations of a Pipeline message that may run together.

    ``local`` runs here in message order; ``forward`` (one sub-batch per
    owner) and ``spread`` (multi-key operations over several owners) then
    run concurrently. Segments run one after another.
    """

    local: list[int] = field(default_factory=list)
    forward: dict[str, list[int]] = field(default_factory=dict)
    spread: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Planned:
    """One operation of a message: its keys and where it goes."""

    keys: list[bytes]
    writes: bool
    multi: bool
    decision: Decision


def plan_batch(ops: Sequence[Planned | None]) -> list[Segment]:
    """Group a message's operations into segments, keeping every key's order.

    Operations on different owners run concurrently, which is safe while
    they touch different keys. Single-key operations on one key share an
    owner, so they stay in order inside one sub-batch (or run here, in
    order). A multi-key operation spread over owners runs on its own,
    though, so when it shares a key with another operation of the segment
    (and one of the two writes), a new segment starts: a later operation
    always sees an earlier one's effect, as on a single node. ``None``
    entries (refused or unknown operations) take no part.
    """
    segments = [Segment()]
    # Keys touched in the current segment (True once written), by any
    # operation and by multi-key operations only.
    touched: dict[bytes, bool] = {}
    touched_multi: dict[bytes, bool] = {}
    for i, planned in enumerate(ops):
        if planned is None:
            continue
        keys, writes, multi = planned.keys, planned.writes, planned.multi
        if _conflicts(keys, writes, touched_multi) or (multi and _conflicts(keys, writes, touched)):
            segments.append(Segment())
            touched, touched_multi = {}, {}
        for key in keys:
            touched[key] = writes or touched.get(key, False)
            if multi:
                touched_multi[key] = writes or touched_multi.get(key, False)
        segment = segments[-1]
        decision = planned.decision
        if type(decision) is Local:
            segment.local.append(i)
        elif type(decision) is Forward:
            segment.forward.setdefault(decision.address, []).append(i)
        else:
            segment.spread.append(i)
    return segments


def _conflicts(keys: list[bytes], writes: bool, touched: dict[bytes, bool]) -> bool:
    """Running ``keys`` concurrently with ``touched`` could reorder a write and another access."""
    if not touched:
        return False
    for key in keys:
        written = touched.get(key)
        if written is not None and (writes or written):
            return True
    return False


# ---- the errors a decision gives --------------------------------------------------------


def moved(slot: int, owner: Owner) -> CommandError:
    """FAILED_PRECONDITION with ErrorInfo MOVED {slot, address, epoch}, as the design requires.

    Not UNAVAILABLE: retry policies would resend that to the same node.
    """
    return CommandError(
        grpc.StatusCode.FAILED_PRECONDITION,
        f"MOVED {slot} {owner.address}",
        Reason.MOVED,
        {
            "slot": str(slot),
            "address": owner.address,
            "epoch": str(owner.epoch),
            "node_id": owner.id,
        },
    )


def cluster_down(why: str) -> CommandError:
    """UNAVAILABLE: retrying later (after a failover or repair) may succeed."""
    return CommandError(grpc.StatusCode.UNAVAILABLE, f"CLUSTERDOWN {why}", Reason.CLUSTER_DOWN)


def handoff_pending(slot: int) -> CommandError:
    """UNAVAILABLE: a write waited as long as it may for a migration's handoff; retry it.

    It is not applied here: the target may take the slot at any moment, and a
    write applied by the old owner after that would be lost.
    """
    return CommandError(
        grpc.StatusCode.UNAVAILABLE,
        f"slot {slot} is being handed over to another node; try again",
        Reason.CLUSTER_DOWN,
    )


def hop_limit(slot: int) -> CommandError:
    """The request was forwarded too often: nodes disagree about the owner right now."""
    return CommandError(
        grpc.StatusCode.UNAVAILABLE,
        f"slot {slot}: forwarded {MAX_HOPS} times without reaching its owner; views disagree",
        Reason.CLUSTER_DOWN,
    )
