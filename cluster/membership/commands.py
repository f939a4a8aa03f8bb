"""Operator commands: what clusterctl (and migrations) may ask of a node's membership.

Each command checks everything first and raises :class:`ClusterError`
without changing anything if the request cannot be applied; the change
itself is made by the module that owns that part of the view.
"""

from __future__ import annotations

from collections.abc import Iterable

from slotcache.contract import SLOT_COUNT

from ..membership.claims import Claims
from ..membership.failover import Elections, FailoverMode
from ..membership.failure_detector import FailureDetector
from ..membership.messages import PONG
from ..membership.model import Peer
from ..membership.step import Outputs, Turn
from ..membership.view import View
from ..wire import bus_pb2

# How long a forgotten node is ignored in gossip (Redis's CLUSTER FORGET ban).
FORGET_BAN_MS = 60_000


class ClusterError(ValueError):
    """An operator request that cannot be applied; nothing was changed."""


def _valid_slots(slots: Iterable[int]) -> list[int]:
    wanted = sorted(set(slots))
    for slot in wanted:
        if not 0 <= slot < SLOT_COUNT:
            raise ClusterError(f"slot {slot} is outside 0..{SLOT_COUNT - 1}")
    return wanted


def require_slot_owner(node: Peer, who: str = "this node") -> None:
    """Refuse slots to a node that cannot own them; a proxy is told why."""
    if node.is_proxy:
        raise ClusterError(
            f"{who} is a proxy (--proxy yes): a proxy never owns slots; give them to a primary"
        )
    if not node.is_primary:
        raise ClusterError("only a primary can own slots")


def _require_primary(view: View) -> None:
    require_slot_owner(view.myself)


def add_slots(view: View, claims: Claims, slots: Iterable[int], out: Outputs) -> None:
    """Claim unassigned slots; refuse the whole request if any is taken or invalid."""
    wanted = _valid_slots(slots)
    _require_primary(view)
    for slot in wanted:
        owner = view.slots.owner(slot)
        if owner is not None and owner != view.id:
            raise ClusterError(f"slot {slot} is already owned by {owner.hex()}")
    claims.assign(wanted, out)


def claim_slots(view: View, claims: Claims, slots: Iterable[int], out: Outputs) -> None:
    """Take ``slots`` now, whoever owns them, under a new config epoch.

    This is Redis's ``CLUSTER SETSLOT <slot> NODE <myself>``: the epoch
    bump makes the claim win everywhere as it spreads, and the previous
    owner drops the slots when it hears of it. Keys are not moved; slot
    migration sends them first.
    """
    wanted = _valid_slots(slots)
    _require_primary(view)
    claims.take(wanted, out)


def apply_claim(
    view: View, claims: Claims, node_id: bytes, epoch: int, slots: Iterable[int], turn: Turn
) -> None:
    """Adopt ``node_id``'s claim on ``slots`` at ``epoch`` now, as if its header had arrived.

    A migration's source does this when the target says it took the
    slots, so the source stops serving them before gossip would tell it.
    """
    node = view.nodes.get(node_id)
    if node is None or node is view.myself:
        raise ClusterError(f"unknown node {node_id.hex()}")
    require_slot_owner(node, node_id.hex())
    claims.adopt(node, epoch, slots, turn)


def set_config_epoch(view: View, claims: Claims, epoch: int, out: Outputs) -> None:
    """Set the first config epoch of a node in a new cluster (as Redis's SET-CONFIG-EPOCH)."""
    if epoch < 1:
        raise ClusterError("config epoch must be >= 1")
    if len(view.nodes) > 1:
        raise ClusterError("the config epoch can only be set before the node meets others")
    if view.myself.config_epoch != 0:
        raise ClusterError("the node already has a config epoch")
    claims.set_config_epoch(epoch, out)


def replicate(view: View, claims: Claims, primary_id: bytes, out: Outputs) -> None:
    """Become a replica of ``primary_id`` (Redis's CLUSTER REPLICATE)."""
    if view.myself.is_proxy:
        raise ClusterError(
            "this node is a proxy (--proxy yes): a proxy never replicates; "
            "start the replica without --proxy"
        )
    primary = view.nodes.get(primary_id)
    if primary is None:
        raise ClusterError(f"unknown node {primary_id.hex()}")
    if primary is view.myself:
        raise ClusterError("a node cannot replicate itself")
    if primary.is_proxy:
        raise ClusterError(f"{primary_id.hex()} is a proxy: it holds no data to replicate")
    if not primary.is_primary:
        raise ClusterError(f"{primary_id.hex()} is a replica, not a primary")
    if view.slots.count(view.id):
        raise ClusterError("this node owns slots; move them away before it becomes a replica")
    claims.follow(primary, out)


def forget(view: View, detector: FailureDetector, node_id: bytes, now: int, out: Outputs) -> None:
    """Remove a node from the view and ignore it in gossip for a while (CLUSTER FORGET).

    Every node must forget it within the ban period, or gossip from one
    that has not would bring it back.
    """
    node = view.nodes.get(node_id)
    if node is None:
        raise ClusterError(f"unknown node {node_id.hex()}")
    if node is view.myself:
        raise ClusterError("a node cannot forget itself")
    if node_id == view.myself.primary_id:
        raise ClusterError("a replica cannot forget its primary")
    owned = view.slots.count(node_id)
    if owned:
        raise ClusterError(f"{node_id.hex()} owns {owned} slots; move them away first")
    drop(view, detector, node_id, now, out)


def drop(view: View, detector: FailureDetector, node_id: bytes, now: int, out: Outputs) -> None:
    """Remove a node and ignore gossip about it for the ban period (no checks: see callers)."""
    view.forget(node_id, now + FORGET_BAN_MS)
    detector.forget(node_id)
    out.changed()


def manual_failover(elections: Elections, mode: FailoverMode, turn: Turn) -> None:
    """Start a manual failover on this replica (see :mod:`failover`)."""
    try:
        elections.start_manual(mode, turn)
    except ValueError as exc:
        raise ClusterError(str(exc)) from None


def check_meet_reply(view: View, reply: bus_pb2.BusMessage) -> None:
    """Refuse an answer to our MEET that cannot add a node."""
    header = reply.header
    if reply.type != PONG or len(header.sender) == 0:
        raise ClusterError("the node answered MEET with something other than a PONG")
    if header.sender == view.id:
        raise ClusterError("a node cannot meet itself")


__all__ = [
    "FORGET_BAN_MS",
    "ClusterError",
    "add_slots",
    "apply_claim",
    "check_meet_reply",
    "claim_slots",
    "drop",
    "forget",
    "manual_failover",
    "replicate",
    "require_slot_owner",
    "set_config_epoch",
]
