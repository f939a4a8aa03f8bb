"""Slot claims and epochs: which claim wins a slot, and the roles that follow from it.

A claim is a node's config epoch paired with the slots it serves. Claims
arrive in the claimant's own header, in gossip entries about it, in UPDATE
messages, and from operators and elections here. For each slot the higher
config epoch wins; a node told about a newer claim than the one it makes
gets an UPDATE back. Two primaries that share a config epoch are told apart
by Redis's collision rule. A primary that loses its last slot, or a replica
whose primary does, follows the winner.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from ..membership.messages import PONG, UPDATE, Messages
from ..membership.model import PRIMARY, REPLICA, ROLE, Peer
from ..membership.slot_table import expand
from ..membership.step import Envelope, Outputs, RoleChanged, SlotsLost, Turn
from ..membership.view import View
from ..wire import bus_pb2


class Claims:
    """Keeps the view's slots, config epochs, current epoch and roles."""

    def __init__(self, view: View, messages: Messages, on_role_change: Callable[[], None]) -> None:
        self._view = view
        self._messages = messages
        # Any election or manual failover in progress is moot once the role changes.
        self._on_role_change = on_role_change

    # ---- epochs ---------------------------------------------------------------------

    def observe_epoch(self, epoch: int, out: Outputs) -> None:
        """A header's current epoch: ours is the highest seen."""
        view = self._view
        if epoch > view.current_epoch:
            view.current_epoch = epoch
            out.persist = True

    def next_epoch(self, out: Outputs) -> int:
        """A new current epoch, for a claim no one else can have made."""
        view = self._view
        view.current_epoch += 1
        out.persist = True
        return view.current_epoch

    def set_config_epoch(self, epoch: int, out: Outputs) -> None:
        """The first config epoch of a node in a new cluster."""
        view = self._view
        view.myself.config_epoch = epoch
        view.current_epoch = max(view.current_epoch, epoch)
        out.changed()

    def _resolve_collision(self, sender: Peer, out: Outputs) -> None:
        """Two primaries share a config epoch: the one with the smaller id takes a new one."""
        view = self._view
        if view.id > sender.id:
            return
        view.myself.config_epoch = self.next_epoch(out)

    # ---- this node's own claims ---------------------------------------------------------

    def assign(self, slots: Iterable[int], out: Outputs) -> None:
        """Own unassigned slots under the current config epoch (Redis's ADDSLOTS)."""
        view = self._view
        for slot in slots:
            view.slots.assign(slot, view.id)
        out.changed()

    def take(self, slots: Iterable[int], out: Outputs) -> None:
        """Own ``slots`` under a new config epoch, which wins them everywhere as it spreads."""
        view = self._view
        view.myself.config_epoch = self.next_epoch(out)
        self.assign(slots, out)

    def take_over(self, primary: Peer, epoch: int, turn: Turn) -> None:
        """Become the primary of ``primary``'s slots under ``epoch`` and tell everyone at once."""
        view = self._view
        me = view.myself
        me.flags = (me.flags & ~REPLICA) | PRIMARY
        me.primary_id = b""
        me.config_epoch = max(me.config_epoch, epoch)
        for slot in view.slots.slots_of(primary.id):
            view.slots.assign(slot, me.id)
        self._on_role_change()
        turn.emit(RoleChanged(b""))
        turn.changed()
        for peer in view.peers():
            turn.send(self._messages.to(peer, PONG, turn))

    def follow(self, primary: Peer, out: Outputs) -> None:
        """Become (or stay) a replica of ``primary``."""
        me = self._view.myself
        if me.flags & REPLICA and me.primary_id == primary.id:
            return
        me.flags = (me.flags & ~PRIMARY) | REPLICA
        me.primary_id = primary.id
        self._on_role_change()
        out.emit(RoleChanged(primary.id))
        out.changed()

    # ---- claims heard from others -------------------------------------------------------

    def apply_header(self, sender: Peer, header: bus_pb2.Header, turn: Turn) -> None:
        """What ``sender`` says about itself: its role, its primary, its epoch and slots."""
        view = self._view
        role = header.flags & ROLE
        if role and role != sender.flags & ROLE:
            sender.flags = (sender.flags & ~ROLE) | role
            turn.changed()
        if bytes(header.primary) != sender.primary_id:
            sender.primary_id = bytes(header.primary)
            turn.persist = True
        sender.repl_offset = header.repl_offset
        if not sender.is_primary:
            return
        epoch = header.config_epoch
        claimed: list[int] | None
        try:
            claimed = list(expand(header.slots))
        except ValueError:
            claimed = None
        if epoch > sender.config_epoch:
            sender.config_epoch = epoch
            turn.persist = True
            if claimed is not None:
                self._release_unclaimed(sender, claimed, turn)
        me = view.myself
        if me.is_primary and sender.config_epoch == me.config_epoch and sender.config_epoch > 0:
            self._resolve_collision(sender, turn)
        if claimed is None or epoch < sender.config_epoch:
            return  # malformed, or an older header that a newer one overtook
        self._claim(sender, claimed, epoch, turn, answer_stale=True)

    def apply_gossiped(self, node: Peer, entry: bus_pb2.GossipEntry, turn: Turn) -> None:
        """Learn a primary's slots second-hand; its config epoch orders the claim."""
        if not entry.config_epoch or not entry.slots or not node.is_primary:
            return
        if entry.config_epoch < node.config_epoch:
            return  # about an older epoch of the node: its slots then are no claim now
        if entry.config_epoch == node.config_epoch and entry.slots == self._view.slots.flat_ranges(
            node.id
        ):
            return  # nothing new: the common case in a settled cluster
        slots = self._newer(node, entry.config_epoch, entry.slots, turn)
        if slots is not None:
            self._claim(node, slots, entry.config_epoch, turn, answer_stale=False)

    def apply_update(self, update: bus_pb2.NodeConfig, turn: Turn) -> None:
        """An UPDATE: someone saw us make a claim older than ``update.node``'s."""
        node = self._view.nodes.get(bytes(update.node))
        if node is None or node is self._view.myself or update.config_epoch < node.config_epoch:
            return
        if node.is_proxy:
            return  # a proxy never owns slots, whatever a confused peer says
        slots = self._newer(node, update.config_epoch, update.slots, turn)
        if slots is None:
            return
        if slots and not node.is_primary:
            # Only primaries own slots: we knew the node as a replica, from before
            # it was promoted. Seen as a primary, it is the one to follow if its
            # claim takes our last slots (as when a failover happened while we slept).
            node.flags = (node.flags & ~REPLICA) | PRIMARY
            node.primary_id = b""
            turn.changed()
        self._claim(node, slots, node.config_epoch, turn, answer_stale=False)

    def adopt(self, node: Peer, epoch: int, slots: Iterable[int], turn: Turn) -> None:
        """Take ``node``'s claim on ``slots`` at ``epoch`` as if its header had arrived."""
        if epoch > node.config_epoch:
            node.config_epoch = epoch
            turn.persist = True
        self._claim(node, list(slots), epoch, turn, answer_stale=False)

    def _newer(self, node: Peer, epoch: int, flat: Sequence[int], out: Outputs) -> list[int] | None:
        """The slots ``node`` claims at ``epoch`` (None if malformed); a newer epoch is adopted."""
        try:
            slots = list(expand(flat))
        except ValueError:
            return None
        if epoch > node.config_epoch:
            node.config_epoch = epoch
            out.persist = True
            self._release_unclaimed(node, slots, out)
        return slots

    def _release_unclaimed(self, node: Peer, claimed: list[int], out: Outputs) -> None:
        """``node`` states its slots under a newer config epoch: forget the ones it left out.

        We learned those under an older epoch, and the node has since lost them
        to a claim we have not heard of yet. Kept, they would be paired with the
        new epoch (in our gossip, our UPDATEs and our own checks) and would beat
        that newer claim wherever the pairing spread. Unowned, they wait for
        the real owner's claim.
        """
        keep = set(claimed)
        table = self._view.slots
        for slot in table.slots_of(node.id):
            if slot not in keep:
                table.assign(slot, None)
                out.changed()

    def _claim(
        self, owner: Peer, slots: list[int], epoch: int, turn: Turn, *, answer_stale: bool
    ) -> None:
        """Apply an ownership claim: a higher config epoch wins each slot.

        With ``answer_stale``, the claimant itself is speaking: if it claims
        slots that someone owns under a newer epoch, tell it with an UPDATE.
        """
        view = self._view
        me = view.myself
        table = view.slots
        lost: list[int] = []
        stale_against: Peer | None = None
        my_primary_lost = False
        for slot in slots:
            current_id = table.owner(slot)
            if current_id == owner.id:
                continue
            current = view.nodes.get(current_id) if current_id is not None else None
            if current is None or current.config_epoch < epoch:
                table.assign(slot, owner.id)
                if current is me:
                    lost.append(slot)
                elif current_id is not None and current_id == me.primary_id:
                    my_primary_lost = True
                turn.changed()
            elif current.config_epoch > epoch:
                stale_against = current
        if lost:
            turn.emit(SlotsLost(tuple(lost), owner.id))
        # A primary that lost its last slot, or a replica whose primary did,
        # follows the node that took them (the winner of a failover, usually).
        i_lost_all = lost and me.is_primary and not table.count(me.id)
        primary_lost_all = my_primary_lost and not table.count(me.primary_id)
        if owner is not me and owner.is_primary and (i_lost_all or primary_lost_all):
            self.follow(owner, turn)
        if stale_against is not None and answer_stale:
            # Tell the sender who owns its stale slots now, as Redis's UPDATE does.
            update = self._messages.build(UPDATE, turn, owner)
            update.update.CopyFrom(
                bus_pb2.NodeConfig(
                    node=stale_against.id,
                    config_epoch=stale_against.config_epoch,
                    slots=table.flat_ranges(stale_against.id),
                )
            )
            turn.send(Envelope(owner.address, update, owner.id))


__all__ = ["Claims"]
