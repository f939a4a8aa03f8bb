"""The membership state machine: gossip, failure detection, epochs and slot ownership.

It follows the Redis Cluster specification with one measured departure, so
that bus traffic per node stays flat as the cluster grows. Redis pings every
node whose last PONG is older than node_timeout/2, which is O(N) pings per
node per node_timeout and makes a 1000-node cluster send hundreds of KB/s
per node. Here, as in SWIM, each node probes one peer per probe interval
(the stalest of a few random ones), so some node probes any given peer about
once per interval. A probe unanswered for node_timeout marks the peer PFAIL.
A slot-owning primary that marks a peer PFAIL sends one failure report to
every primary (Redis relies on all-to-all pings to carry reports; with
random probing a node hears from too few peers within 2 x node_timeout to
collect a majority). A node that hears a report, or sees the suspicion in
gossip, probes the suspect itself and, since the suspect has already been
silent to someone for node_timeout, confirms PFAIL after node_timeout/2. When
a majority of slot-owning primaries report PFAIL within 2 x node_timeout, the
peer is marked FAIL and the FAIL is broadcast, as in Redis.

Times are integer milliseconds from the caller's monotonic clock.
"""

from __future__ import annotations

import heapq
import random as _random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from slotcache.contract import SLOT_COUNT

from ..membership.failover import AUTH_ACK, AUTH_REQUEST, MFSTART, Elections, FailoverMode
from ..membership.model import (
    FAIL,
    FAILING,
    PFAIL,
    PRIMARY,
    REPLICA,
    Address,
    MembershipConfig,
    Peer,
)
from ..membership.slot_table import SlotTable, expand, flatten
from ..wire import bus_pb2

PING = bus_pb2.MESSAGE_TYPE_PING
PONG = bus_pb2.MESSAGE_TYPE_PONG
MEET = bus_pb2.MESSAGE_TYPE_MEET
FAIL_MSG = bus_pb2.MESSAGE_TYPE_FAIL
UPDATE = bus_pb2.MESSAGE_TYPE_UPDATE
REPORT = bus_pb2.MESSAGE_TYPE_REPORT


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message for the transport to deliver to ``dest``'s bus port."""

    dest: Address
    message: bus_pb2.BusMessage


@dataclass(frozen=True, slots=True)
class SlotsLost:
    """This node no longer owns ``slots``: a newer claim won them."""

    slots: tuple[int, ...]
    new_owner: bytes


@dataclass(frozen=True, slots=True)
class NodeFailed:
    """``node`` was marked FAIL (by us or by a FAIL message)."""

    node: bytes


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The cluster state flipped between ok and fail."""

    ok: bool


@dataclass(frozen=True, slots=True)
class RoleChanged:
    """This node became a replica of ``primary``, or a primary (``primary`` empty)."""

    primary: bytes


Event = SlotsLost | NodeFailed | StateChanged | RoleChanged

# Gossip-discovered nodes are introduced with a MEET, a few per tick, so that
# small clusters converge in a round or two. Every node meeting every other is
# N^2 messages, so above MEET_MAX_NODES known nodes discovery is left to gossip.
MEETS_PER_TICK = 10
MEET_MAX_NODES = 64
# After a restart, the cluster state stays fail this long (at most) so the
# node hears about configuration changes it missed before it serves again.
WRITABLE_DELAY_MS = 2_000
# How long a forgotten node is ignored in gossip (Redis's CLUSTER FORGET ban).
FORGET_BAN_MS = 60_000
# About how many primaries broadcast a FAIL verdict they reached themselves.
FAIL_BROADCASTERS = 8
# A primary back from a minority partition waits this long (Redis: node_timeout
# clamped to 0.5-5 s) before serving, to hear of a failover it missed first.
REJOIN_DELAY_MIN_MS = 500
REJOIN_DELAY_MAX_MS = 5_000


class ClusterError(ValueError):
    """An operator request that cannot be applied; nothing was changed."""


class Membership:
    """One node's view of the cluster, driven by ``tick`` and ``receive``."""

    def __init__(
        self,
        config: MembershipConfig,
        myself: Peer,
        now: int,
        *,
        random: _random.Random | None = None,
    ) -> None:
        self.config = config
        self.myself = myself
        self.current_epoch = 0
        self.last_vote_epoch = 0
        self.nodes: dict[bytes, Peer] = {myself.id: myself}
        self.slots = SlotTable()
        self.ok = False
        self.size = 0
        self.events: list[Event] = []
        # Set when something persistent changed (epochs, slots, nodes, roles).
        self.config_dirty = True
        self.rng = random or _random.Random()
        self._state_dirty = True
        self._next_random_ping = now + config.probe_interval_ms
        # Peers ordered by when they next need attention; entries are re-checked
        # when popped, so stale entries are harmless.
        self._due: list[tuple[int, bytes]] = []
        self._ids: list[bytes] = []
        self._ids_dirty = True
        self._meet_queue: list[bytes] = []
        # Forgotten nodes, ignored in gossip until the given time (Redis's ban list).
        self._banned: dict[bytes, int] = {}
        self.started_at = now
        # When tick() last ran: a long gap means this node stood still (see _resumed).
        self._last_tick = now
        # When this primary last could not reach a majority of primaries.
        self._minority_at = 0
        # Set when the view was restored from disk after a restart.
        self.restored = False
        self.elections = Elections(self)
        # Where this node's data stands; the runtime plugs in its replication offset.
        self.replication_offset: Callable[[], int] = lambda: self.myself.repl_offset
        myself.pong_received = now
        self._update_state(now)

    # ---- identity ----------------------------------------------------------

    @property
    def id(self) -> bytes:
        """This node's id."""
        return self.myself.id

    def peers(self) -> Iterable[Peer]:
        """Every known node except this one."""
        return (p for p in self.nodes.values() if p is not self.myself)

    def my_primary(self) -> Peer | None:
        """The primary this node replicates, if it is a replica."""
        primary = self.myself.primary
        return self.nodes.get(primary) if primary else None

    # ---- inputs: operator commands ------------------------------------------

    def meet_message(self, now: int) -> bus_pb2.BusMessage:
        """The MEET to send to a node an operator introduced."""
        return self.message(MEET, now, None)

    def complete_meet(self, reply: bus_pb2.BusMessage, now: int) -> Peer:
        """Add the node that answered our MEET, then process its PONG normally."""
        header = reply.header
        if reply.type != PONG or len(header.sender) == 0:
            raise ClusterError("the node answered MEET with something other than a PONG")
        if header.sender == self.id:
            raise ClusterError("a node cannot meet itself")
        peer = self.nodes.get(header.sender)
        if peer is None:
            peer = self._add_node(header.sender, Address.from_proto(header.address), now)
        self.receive(reply, now)
        return peer

    def add_slots(self, slots: Iterable[int]) -> None:
        """Claim unassigned slots; refuse the whole request if any is taken or invalid."""
        wanted = sorted(set(slots))
        for slot in wanted:
            if not 0 <= slot < SLOT_COUNT:
                raise ClusterError(f"slot {slot} is outside 0..{SLOT_COUNT - 1}")
            owner = self.slots.owner(slot)
            if owner is not None and owner != self.id:
                raise ClusterError(f"slot {slot} is already owned by {owner.hex()}")
        if not self.myself.is_primary:
            raise ClusterError("only a primary can own slots")
        for slot in wanted:
            self.slots.assign(slot, self.id)
        self._changed()

    def claim_slots(self, slots: Iterable[int], now: int) -> None:
        """Take ``slots`` now, whoever owns them, under a new config epoch.

        This is Redis's ``CLUSTER SETSLOT <slot> NODE <myself>``: the epoch
        bump makes the claim win everywhere as it spreads, and the previous
        owner drops the slots when it hears of it. Keys are not moved; slot
        migration sends them first.
        """
        wanted = sorted(set(slots))
        for slot in wanted:
            if not 0 <= slot < SLOT_COUNT:
                raise ClusterError(f"slot {slot} is outside 0..{SLOT_COUNT - 1}")
        if not self.myself.is_primary:
            raise ClusterError("only a primary can own slots")
        self.current_epoch += 1
        self.myself.config_epoch = self.current_epoch
        for slot in wanted:
            self.slots.assign(slot, self.id)
        self._changed()

    def forget(self, node_id: bytes, now: int) -> None:
        """Remove a node from the view and ignore it in gossip for a while (CLUSTER FORGET).

        Every node must forget it within the ban period, or gossip from one
        that has not would bring it back.
        """
        node = self.nodes.get(node_id)
        if node is None:
            raise ClusterError(f"unknown node {node_id.hex()}")
        if node is self.myself:
            raise ClusterError("a node cannot forget itself")
        if node_id == self.myself.primary:
            raise ClusterError("a replica cannot forget its primary")
        if self.slots.count(node_id):
            raise ClusterError(
                f"{node_id.hex()} owns {self.slots.count(node_id)} slots; move them away first"
            )
        del self.nodes[node_id]
        self._banned[node_id] = now + FORGET_BAN_MS
        for peer in self.nodes.values():
            peer.fail_reports.pop(node_id, None)
        self._ids_dirty = True
        self._changed()

    def apply_claim(self, node_id: bytes, epoch: int, slots: Iterable[int], now: int) -> None:
        """Adopt ``node_id``'s claim on ``slots`` at ``epoch`` now, as if its header had arrived.

        A migration's source does this when the target says it took the
        slots, so the source stops serving them before gossip would tell it.
        """
        node = self.nodes.get(node_id)
        if node is None or node is self.myself:
            raise ClusterError(f"unknown node {node_id.hex()}")
        if epoch > node.config_epoch:
            node.config_epoch = epoch
            self.config_dirty = True
        self._claim(node, list(slots), epoch, now, None)
        if self._state_dirty:
            self._update_state(now)

    def set_config_epoch(self, epoch: int) -> None:
        """Set the first config epoch of a node in a new cluster (as Redis's SET-CONFIG-EPOCH)."""
        if epoch < 1:
            raise ClusterError("config epoch must be >= 1")
        if len(self.nodes) > 1:
            raise ClusterError("the config epoch can only be set before the node meets others")
        if self.myself.config_epoch != 0:
            raise ClusterError("the node already has a config epoch")
        self.myself.config_epoch = epoch
        self.current_epoch = max(self.current_epoch, epoch)
        self._changed()

    def replicate(self, primary_id: bytes, now: int) -> None:
        """Become a replica of ``primary_id`` (Redis's CLUSTER REPLICATE)."""
        primary = self.nodes.get(primary_id)
        if primary is None:
            raise ClusterError(f"unknown node {primary_id.hex()}")
        if primary is self.myself:
            raise ClusterError("a node cannot replicate itself")
        if not primary.is_primary:
            raise ClusterError(f"{primary_id.hex()} is a replica, not a primary")
        if self.slots.count(self.id):
            raise ClusterError("this node owns slots; move them away before it becomes a replica")
        self._follow(primary)

    def manual_failover(self, mode: FailoverMode, now: int) -> list[Envelope]:
        """Start a manual failover on this replica (see :mod:`cluster.membership.failover`)."""
        out: list[Envelope] = []
        try:
            self.elections.start_manual(mode, now, out)
        except ValueError as exc:
            raise ClusterError(str(exc)) from None
        if self._state_dirty:
            self._update_state(now)
        return out

    def writes_paused(self, now: int) -> bool:
        """Writes wait: a replica is catching up for a manual failover."""
        return self.elections.writes_paused(now)

    def announce(self, now: int) -> list[Envelope]:
        """Ping every known node, as a restarted node does to rejoin quickly."""
        return [self.ping(peer, now) for peer in list(self.peers())]

    # ---- inputs: clock -----------------------------------------------------

    def tick(self, now: int) -> list[Envelope]:
        """Advance time: send due pings, detect timeouts, expire reports, update state."""
        out: list[Envelope] = []
        cfg = self.config
        if now - self._last_tick > cfg.tick_ms + cfg.node_timeout_ms:
            self._resumed(now)
        self._last_tick = now
        if now >= self._next_random_ping:
            self._next_random_ping = now + cfg.probe_interval_ms
            target = self._stalest_of_random(cfg.random_ping_candidates)
            if target is not None:
                out.append(self.ping(target, now))
        if self._meet_queue:
            batch, self._meet_queue = (
                self._meet_queue[:MEETS_PER_TICK],
                self._meet_queue[MEETS_PER_TICK:],
            )
            for node_id in batch:
                peer = self.nodes.get(node_id)
                if peer is not None and not peer.pong_received:
                    out.append(self.ping(peer, now, MEET))
        self.elections.tick(now, out)
        while self._due and self._due[0][0] <= now:
            due, node_id = heapq.heappop(self._due)
            peer = self.nodes.get(node_id)
            if peer is None or peer is self.myself or peer.due != due:
                continue  # removed, or rescheduled since
            self._attend(peer, now, out)
        if self._state_dirty:
            self._update_state(now)
        return out

    def _resumed(self, now: int) -> None:
        """This node stood still for longer than node_timeout (a stopped process, a huge stall).

        Its peers may have failed it over meanwhile, and until it hears from
        them it would serve slots it no longer owns. As after a restart, its
        state stays fail for the writable delay, so that it hears first.
        """
        self.restored = True
        self.started_at = now
        self._state_dirty = True
        if self.ok:
            self.ok = False
            self.events.append(StateChanged(False))

    def _attend(self, peer: Peer, now: int, out: list[Envelope]) -> None:
        """Do whatever ``peer`` needs now, then schedule its next check."""
        cfg = self.config
        if peer.ping_sent:
            if not peer.flags & FAILING and now - peer.ping_sent >= self._pfail_after(peer):
                self._set_pfail(peer, now, out)
            if now - peer.ping_attempt >= cfg.resend_ms:
                out.append(self.ping(peer, now))
        elif peer.flags & FAIL or now - peer.pong_received >= self._refresh_ms():
            # Keep knocking on failed nodes so their FAIL can be lifted when they
            # return, and keep direct contact with healthy ones (see _refresh_ms).
            out.append(self.ping(peer, now))
        self._schedule(peer, now)

    def _refresh_ms(self) -> int:
        """How stale a peer's last PONG may get before we ping it directly.

        node_timeout/2 as in Redis while the cluster is small, so detection
        starts from a recent ping; in large clusters the interval grows with
        N squared (10 ms x N^2), which keeps these pings to about N/(10 N^2)
        per millisecond and leaves failure detection to the random probes.
        """
        n = len(self.nodes)
        return max(self.config.node_timeout_ms // 2, 10 * n * n)

    def _set_pfail(self, peer: Peer, now: int, out: list[Envelope]) -> None:
        peer.flags |= PFAIL
        self._state_dirty = True
        if self.is_voter(self.myself):
            report = self.message(REPORT, now, None)
            report.failing = peer.id
            out.extend(
                Envelope(p.address, report) for p in self.peers() if p is not peer and p.is_primary
            )
        self._mark_failing_if_needed(peer, now, out)

    def is_voter(self, node: Peer) -> bool:
        """Only slot-owning primaries count towards failure majorities."""
        return node.is_primary and self.slots.count(node.id) > 0

    def _pfail_after(self, peer: Peer) -> int:
        """How long a ping may go unanswered before the peer is PFAIL.

        node_timeout, or half of it when another primary already reported the
        peer: the peer has then been silent to someone for node_timeout already.
        """
        timeout = self.config.node_timeout_ms
        return timeout // 2 if peer.fail_reports else timeout

    def _schedule(self, peer: Peer, now: int) -> None:
        cfg = self.config
        if peer.ping_sent:
            due = peer.ping_attempt + cfg.resend_ms
            if not peer.flags & FAILING:
                due = min(due, peer.ping_sent + self._pfail_after(peer))
        elif peer.flags & FAIL:
            due = peer.ping_attempt + cfg.resend_ms
        else:
            due = max(peer.pong_received, peer.ping_attempt) + self._refresh_ms()
        peer.due = max(due, now + 1)
        heapq.heappush(self._due, (peer.due, peer.id))

    # ---- inputs: messages --------------------------------------------------

    def receive(
        self, msg: bus_pb2.BusMessage, now: int
    ) -> tuple[bus_pb2.BusMessage | None, list[Envelope]]:
        """Process one message; return the reply (PONG for PING/MEET) and anything else to send."""
        out: list[Envelope] = []
        header = msg.header
        sender_id = bytes(header.sender)
        if sender_id == self.id or len(sender_id) == 0:
            return None, out
        sender = self.nodes.get(sender_id)
        if sender is None and msg.type == MEET:
            sender = self._add_node(sender_id, Address.from_proto(header.address), now)
        if header.current_epoch > self.current_epoch:
            self.current_epoch = header.current_epoch
            self.config_dirty = True
        reply = self.message(PONG, now, sender) if msg.type in (PING, MEET) else None
        if sender is None:
            # Unknown nodes may not join by PING; only an operator's MEET adds them.
            return reply, out
        self._note_alive(sender, header, msg.type, now)
        self._apply_header(sender, header, now, out)
        if sender.id == self.myself.primary:
            self.elections.on_primary_header(header)
        if msg.type in (PING, PONG, MEET):
            self._apply_gossip(sender, msg.gossip, now, out)
        elif msg.type == FAIL_MSG:
            failing = self.nodes.get(bytes(msg.failing))
            if failing is not None and failing is not self.myself and not failing.flags & FAIL:
                self._set_fail(failing, now)
        elif msg.type == UPDATE:
            self._apply_update(msg.update, now)
        elif msg.type == REPORT:
            suspect = self.nodes.get(bytes(msg.failing))
            if suspect is not None and suspect is not self.myself:
                self._suspicion(sender, suspect, now, out)
        elif msg.type == AUTH_REQUEST:
            self.elections.on_auth_request(sender, header, now, out)
        elif msg.type == AUTH_ACK:
            self.elections.on_auth_ack(sender, header, now, out)
        elif msg.type == MFSTART:
            self.elections.on_mfstart(sender, now, out)
        if self._state_dirty:
            self._update_state(now)
        return reply, out

    def _note_alive(
        self, sender: Peer, header: bus_pb2.Header, kind: bus_pb2.MessageType.ValueType, now: int
    ) -> None:
        address = Address.from_proto(header.address)
        if address.host and address != sender.address:
            sender.address = address
            self.config_dirty = True
        if kind == PONG:
            sender.pong_received = now
            sender.ping_sent = 0
            if sender.flags & PFAIL:
                sender.flags &= ~PFAIL
                self._state_dirty = True
            if sender.flags & FAIL:
                self._clear_fail_if_needed(sender, now)
        self._schedule(sender, now)

    def _apply_header(
        self, sender: Peer, header: bus_pb2.Header, now: int, out: list[Envelope]
    ) -> None:
        role = header.flags & (PRIMARY | REPLICA)
        if role and role != sender.flags & (PRIMARY | REPLICA):
            sender.flags = (sender.flags & ~(PRIMARY | REPLICA)) | role
            self.config_dirty = self._state_dirty = True
        if bytes(header.primary) != sender.primary:
            sender.primary = bytes(header.primary)
            self.config_dirty = True
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
            self.config_dirty = True
            if claimed is not None:
                self._release_unclaimed(sender, claimed)
        if (
            self.myself.is_primary
            and sender.config_epoch == self.myself.config_epoch
            and sender.config_epoch > 0
        ):
            self._resolve_epoch_collision(sender)
        if claimed is None or epoch < sender.config_epoch:
            return  # malformed, or an older header that a newer one overtook
        self._claim(sender, claimed, epoch, now, out)

    def _release_unclaimed(self, node: Peer, claimed: list[int]) -> None:
        """``node`` states its slots under a newer config epoch: forget the ones it left out.

        We learned those under an older epoch, and the node has since lost them
        to a claim we have not heard of yet. Kept, they would be paired with the
        new epoch (in our gossip, our UPDATEs and our own checks) and would beat
        that newer claim wherever the pairing spread. Unowned, they wait for
        the real owner's claim.
        """
        keep = set(claimed)
        for slot in self.slots.slots_of(node.id):
            if slot not in keep:
                self.slots.assign(slot, None)
                self.config_dirty = self._state_dirty = True

    def _claim(
        self,
        owner: Peer,
        slots: list[int],
        epoch: int,
        now: int,
        out: list[Envelope] | None,
    ) -> None:
        """Apply an ownership claim: a higher config epoch wins each slot."""
        lost: list[int] = []
        stale_against: Peer | None = None
        my_primary_lost = False
        for slot in slots:
            current_id = self.slots.owner(slot)
            if current_id == owner.id:
                continue
            current = self.nodes.get(current_id) if current_id is not None else None
            if current is None or current.config_epoch < epoch:
                self.slots.assign(slot, owner.id)
                if current is self.myself:
                    lost.append(slot)
                elif current_id is not None and current_id == self.myself.primary:
                    my_primary_lost = True
                self.config_dirty = self._state_dirty = True
            elif current.config_epoch > epoch:
                stale_against = current
        if lost:
            self.events.append(SlotsLost(tuple(lost), owner.id))
        # A primary that lost its last slot, or a replica whose primary did,
        # follows the node that took them (the winner of a failover, usually).
        i_lost_all = lost and self.myself.is_primary and not self.slots.count(self.id)
        primary_lost_all = my_primary_lost and not self.slots.count(self.myself.primary)
        if owner is not self.myself and owner.is_primary and (i_lost_all or primary_lost_all):
            self._follow(owner)
        if stale_against is not None and out is not None:
            # Tell the sender who owns its stale slots now, as Redis's UPDATE does.
            update = self.message(UPDATE, now, owner)
            update.update.CopyFrom(
                bus_pb2.NodeConfig(
                    node=stale_against.id,
                    config_epoch=stale_against.config_epoch,
                    slots=self.slots.flat_ranges(stale_against.id),
                )
            )
            out.append(Envelope(owner.address, update))

    def _apply_update(self, update: bus_pb2.NodeConfig, now: int) -> None:
        node = self.nodes.get(bytes(update.node))
        if node is None or node is self.myself or update.config_epoch < node.config_epoch:
            return
        try:
            slots = list(expand(update.slots))
        except ValueError:
            return
        if update.config_epoch > node.config_epoch:
            node.config_epoch = update.config_epoch
            self._release_unclaimed(node, slots)
        if slots and not node.is_primary:
            # Only primaries own slots: we knew the node as a replica, from before
            # it was promoted. Seen as a primary, it is the one to follow if its
            # claim takes our last slots (as when a failover happened while we slept).
            node.flags = (node.flags & ~REPLICA) | PRIMARY
            node.primary = b""
            self.config_dirty = self._state_dirty = True
        self._claim(node, slots, node.config_epoch, now, None)

    def _resolve_epoch_collision(self, sender: Peer) -> None:
        """Two primaries share a config epoch: the one with the smaller id takes a new one."""
        if self.id > sender.id:
            return
        self.current_epoch += 1
        self.myself.config_epoch = self.current_epoch
        self.config_dirty = True

    def _apply_gossip(
        self,
        sender: Peer,
        entries: Iterable[bus_pb2.GossipEntry],
        now: int,
        out: list[Envelope],
    ) -> None:
        for entry in entries:
            node_id = bytes(entry.node)
            if node_id == self.id:
                continue
            node = self.nodes.get(node_id)
            if node is None:
                if self._banned.get(node_id, 0) > now:
                    continue
                if not entry.flags & FAILING and entry.address.host:
                    node = self._add_node(node_id, Address.from_proto(entry.address), now)
                    node.flags = entry.flags & (PRIMARY | REPLICA) or PRIMARY
                    self._apply_gossiped_claim(node, entry, now)
                    if len(self.nodes) <= MEET_MAX_NODES:
                        self._meet_queue.append(node_id)
                continue
            self._apply_gossiped_claim(node, entry, now)
            if entry.flags & FAILING:
                self._suspicion(sender, node, now, out)
            else:
                node.fail_reports.pop(sender.id, None)
                if node.failing and entry.address.host:
                    address = Address.from_proto(entry.address)
                    if address != node.address:
                        node.address = address
                        self.config_dirty = True

    def _apply_gossiped_claim(self, node: Peer, entry: bus_pb2.GossipEntry, now: int) -> None:
        """Learn a primary's slots second-hand; its config epoch orders the claim."""
        if not entry.config_epoch or not entry.slots or not node.is_primary:
            return
        if entry.config_epoch < node.config_epoch:
            return  # about an older epoch of the node: its slots then are no claim now
        if entry.config_epoch == node.config_epoch and entry.slots == self.slots.flat_ranges(
            node.id
        ):
            return  # nothing new: the common case in a settled cluster
        try:
            slots = list(expand(entry.slots))
        except ValueError:
            return
        if entry.config_epoch > node.config_epoch:
            node.config_epoch = entry.config_epoch
            self.config_dirty = True
            self._release_unclaimed(node, slots)
        self._claim(node, slots, entry.config_epoch, now, None)

    # ---- failure detection ---------------------------------------------------

    def _suspicion(self, reporter: Peer, suspect: Peer, now: int, out: list[Envelope]) -> None:
        """``reporter`` sees ``suspect`` failing: record it and check it ourselves."""
        first_report = not suspect.fail_reports
        if self.is_voter(reporter):
            suspect.fail_reports[reporter.id] = now
        if not suspect.ping_sent and not suspect.flags & FAIL:
            # Check the suspicion ourselves rather than take it on trust.
            out.append(self.ping(suspect, now))
        elif first_report and suspect.fail_reports and not suspect.flags & FAILING:
            # A ping was already outstanding: with a report in hand, PFAIL is now
            # due node_timeout/2 after it was sent, not node_timeout.
            self._schedule(suspect, now)
        self._mark_failing_if_needed(suspect, now, out)

    def _mark_failing_if_needed(self, node: Peer, now: int, out: list[Envelope]) -> None:
        """Mark ``node`` FAIL when we see it PFAIL and a majority of primaries agree."""
        if not node.flags & PFAIL or node.flags & FAIL:
            return
        horizon = now - self.config.report_validity_ms
        for reporter, at in list(node.fail_reports.items()):
            if at < horizon or self.slots.count(reporter) == 0:
                del node.fail_reports[reporter]
        votes = len(node.fail_reports) + self.is_voter(self.myself)
        if votes < self.size // 2 + 1:
            return
        self._set_fail(node, now)
        # Every primary receives the failure reports and reaches this verdict
        # on its own, at about the same moment; if each broadcast it, a
        # failure would cost N^2 messages. A few random broadcasters (about
        # FAIL_BROADCASTERS) tell the replicas and any primary that missed a report.
        if self.rng.random() < FAIL_BROADCASTERS / max(self.size, 1):
            message = self.message(FAIL_MSG, now, None)
            message.failing = node.id
            out.extend(Envelope(p.address, message) for p in self.peers() if p is not node)

    def _set_fail(self, node: Peer, now: int) -> None:
        node.flags = (node.flags & ~PFAIL) | FAIL
        node.fail_time = now
        self._state_dirty = True
        self.events.append(NodeFailed(node.id))

    def _clear_fail_if_needed(self, node: Peer, now: int) -> None:
        """Lift FAIL from a node that answers again (Redis's clearNodeFailureIfNeeded)."""
        serves_slots = node.is_primary and self.slots.count(node.id) > 0
        if not serves_slots or now - node.fail_time > self.config.report_validity_ms:
            node.flags &= ~FAIL
            node.fail_reports.clear()
            self._state_dirty = True

    # ---- cluster state ------------------------------------------------------

    def _update_state(self, now: int) -> None:
        self._state_dirty = False
        owners = self.slots.owners()
        self.size = sum(1 for node_id in owners if node_id in self.nodes)
        reachable = sum(
            1
            for node_id in owners
            if node_id in self.nodes and not self.nodes[node_id].flags & FAILING
        )
        majority = reachable >= self.size // 2 + 1
        if not majority and self.myself.is_primary:
            self._minority_at = now
        ok = self.size > 0 and majority
        if ok and self.config.require_full_coverage:
            ok = self.slots.unassigned() == 0 and all(
                not self.nodes[node_id].flags & FAIL for node_id in owners if node_id in self.nodes
            )
        if (
            ok
            and not self.ok
            and self.restored
            and now - self.started_at < min(WRITABLE_DELAY_MS, self.config.node_timeout_ms)
        ):
            ok = False
            self._state_dirty = True  # look again on the next tick
        rejoin_delay = min(
            max(self.config.node_timeout_ms, REJOIN_DELAY_MIN_MS), REJOIN_DELAY_MAX_MS
        )
        if ok and not self.ok and self._minority_at and now - self._minority_at < rejoin_delay:
            ok = False
            self._state_dirty = True
        if ok != self.ok:
            self.ok = ok
            self.events.append(StateChanged(ok))

    # ---- outputs -------------------------------------------------------------

    def ping(self, peer: Peer, now: int, kind: bus_pb2.MessageType.ValueType = PING) -> Envelope:
        """A PING (or MEET) to ``peer``, starting its ping clock if none is outstanding."""
        if not peer.ping_sent:
            peer.ping_sent = now
        peer.ping_attempt = now
        self._schedule(peer, now)
        return Envelope(peer.address, self.message(kind, now, peer))

    def envelope(self, peer: Peer, kind: bus_pb2.MessageType.ValueType, now: int) -> Envelope:
        """A message of ``kind`` for ``peer``."""
        return Envelope(peer.address, self.message(kind, now, peer))

    def envelope_of(self, peer: Peer, message: bus_pb2.BusMessage) -> Envelope:
        """``message`` addressed to ``peer``."""
        return Envelope(peer.address, message)

    def message(
        self, kind: bus_pb2.MessageType.ValueType, now: int, receiver: Peer | None
    ) -> bus_pb2.BusMessage:
        """A message of ``kind`` with our header (and gossip, for PING/PONG/MEET)."""
        me = self.myself
        msg = bus_pb2.BusMessage(type=kind)
        header = msg.header
        header.sender = me.id
        header.current_epoch = self.current_epoch
        header.config_epoch = me.config_epoch
        header.flags = me.flags
        header.slots.extend(self.slots.flat_ranges(me.id))
        header.primary = me.primary
        header.repl_offset = self.replication_offset()
        header.mflags = self.elections.message_flags(now)
        header.cluster_ok = self.ok
        header.address.CopyFrom(me.address.to_proto())
        if kind in (PING, PONG, MEET):
            self._add_gossip(msg, now, receiver)
        return msg

    def _add_gossip(self, msg: bus_pb2.BusMessage, now: int, receiver: Peer | None) -> None:
        """About a tenth of the nodes (at least a few) plus every node we suspect."""
        ids = self._known_ids()
        others = len(ids) - (1 if receiver is not None else 0)
        if others <= 0:
            return
        cfg = self.config
        wanted = min(others, max(cfg.gossip_min, int(len(ids) * cfg.gossip_fraction)))
        # A dict, not a set: iterating a set of bytes follows the per-process
        # hash seed, which would make the gossip order, and with it every
        # simulation, differ from run to run.
        chosen: dict[bytes, None] = {}
        attempts = wanted * 3
        while len(chosen) < wanted and attempts:
            attempts -= 1
            node_id = ids[int(self.rng.random() * len(ids))]
            if receiver is None or node_id != receiver.id:
                chosen[node_id] = None
        chosen.update((p.id, None) for p in self.peers() if p.flags & FAILING)
        if receiver is not None:
            chosen.pop(receiver.id, None)
        gossip = msg.gossip
        for node_id in chosen:
            node = self.nodes[node_id]
            entry = gossip.add(node=node.id, address=node.address.to_proto(), flags=node.flags)
            if node.is_primary and node.config_epoch:
                entry.config_epoch = node.config_epoch
                entry.slots.extend(self.slots.flat_ranges(node.id))

    def _known_ids(self) -> list[bytes]:
        if self._ids_dirty:
            self._ids = [p.id for p in self.peers()]
            self._ids_dirty = False
        return self._ids

    def _stalest_of_random(self, candidates: int) -> Peer | None:
        ids = self._known_ids()
        best: Peer | None = None
        for _ in range(min(candidates, len(ids))):
            peer = self.nodes[ids[int(self.rng.random() * len(ids))]]
            if peer.ping_sent:
                continue
            if best is None or peer.pong_received < best.pong_received:
                best = peer
        return best

    # ---- bookkeeping -----------------------------------------------------------

    def _add_node(self, node_id: bytes, address: Address, now: int) -> Peer:
        return self.adopt(Peer(id=node_id, address=address), now)

    def adopt(self, peer: Peer, now: int) -> Peer:
        """Add a known node (from gossip, a MEET, or the node file after a restart)."""
        self.nodes[peer.id] = peer
        self._ids_dirty = True
        self._changed()
        self._schedule(peer, now)
        return peer

    def _follow(self, primary: Peer) -> None:
        """Become (or stay) a replica of ``primary``."""
        me = self.myself
        if me.flags & REPLICA and me.primary == primary.id:
            return
        me.flags = (me.flags & ~PRIMARY) | REPLICA
        me.primary = primary.id
        self.elections.reset_election()
        self.elections.reset_manual()
        self.events.append(RoleChanged(primary.id))
        self._changed()

    def promoted(self, old_primary: Peer, now: int, out: list[Envelope]) -> None:
        """This replica took over ``old_primary``'s slots: tell everyone at once."""
        self.events.append(RoleChanged(b""))
        self._changed()
        out.extend(self.envelope(p, PONG, now) for p in self.peers())

    def _changed(self) -> None:
        self.config_dirty = True
        self._state_dirty = True

    def drain_events(self) -> list[Event]:
        """Events since the last call, oldest first."""
        events, self.events = self.events, []
        return events

    # ---- views ---------------------------------------------------------------

    def owner_of(self, slot: int) -> Peer | None:
        """The node that serves ``slot``, if known."""
        owner = self.slots.owner(slot)
        return self.nodes.get(owner) if owner is not None else None

    def slot_ranges(self, node_id: bytes) -> list[tuple[int, int]]:
        """The slots of a node as inclusive ranges."""
        flat = self.slots.flat_ranges(node_id)
        return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


def new_node_id(randbytes: Callable[[int], bytes]) -> bytes:
    """A fresh 160-bit node id."""
    return randbytes(20)


__all__ = [
    "FAIL",
    "PFAIL",
    "ClusterError",
    "Envelope",
    "Event",
    "Membership",
    "NodeFailed",
    "RoleChanged",
    "SlotsLost",
    "StateChanged",
    "flatten",
    "new_node_id",
]
