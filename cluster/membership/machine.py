"""The membership state machine: one node's view of the cluster, driven step by step.

It follows the Redis Cluster specification with one measured departure
(random probing, see :mod:`gossip` and :mod:`failure_detector`), so that bus
traffic per node stays flat as the cluster grows. The work is split by
concern; this module routes each input to them and returns what they
produced as one :class:`Step`:

- :mod:`failure_detector`: ping clocks, PFAIL, failure reports, FAIL;
- :mod:`claims`: slot claims, config epochs and collisions, and the roles
  that follow from them;
- :mod:`gossip`: which nodes a message tells about, which peers to probe;
- :mod:`failover`: elections and manual failover, behind a narrow interface;
- :mod:`cluster_state`: ok or fail;
- :mod:`commands`: operator commands and their refusals.

Times are integer milliseconds from the caller's monotonic clock. Nothing
here reads a clock, touches the network or the disk.
"""

from __future__ import annotations

import random as _random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from slotcache.contract import SLOT_COUNT

from ..membership import commands, proxies
from ..membership.claims import Claims
from ..membership.cluster_state import ClusterState
from ..membership.commands import ClusterError
from ..membership.failover import Elections, FailoverMode
from ..membership.failure_detector import FailureDetector
from ..membership.gossip import Gossip
from ..membership.messages import (
    AUTH_ACK,
    AUTH_REQUEST,
    FAIL_MSG,
    GOSSIPING,
    LEAVE,
    MEET,
    MFSTART,
    PING,
    PONG,
    REPORT,
    UPDATE,
    Messages,
    MessageType,
)
from ..membership.model import FAILING, PRIMARY, ROLE, Address, MembershipConfig, Peer
from ..membership.slot_table import SlotTable
from ..membership.step import NO_INPUTS, Envelope, Inputs, Outputs, Step, Turn
from ..membership.view import View
from ..wire import bus_pb2


@dataclass(frozen=True, slots=True)
class Remembered:
    """What a node file gives back after a restart (see :mod:`snapshot`)."""

    current_epoch: int = 0
    last_vote_epoch: int = 0
    peers: tuple[Peer, ...] = ()
    # Node id -> the slots it owned.
    slots: Mapping[bytes, Iterable[int]] = field(default_factory=dict)


class _ElectionHost:
    """What elections may ask of the rest of membership (see ``ElectionHost``)."""

    def __init__(self, membership: Membership) -> None:
        self._m = membership

    def next_epoch(self, out: Outputs) -> int:
        return self._m.claims.next_epoch(out)

    def take_over(self, primary: Peer, epoch: int, turn: Turn) -> None:
        self._m.claims.take_over(primary, epoch, turn)

    def message(self, kind: MessageType, turn: Turn, receiver: Peer | None) -> bus_pb2.BusMessage:
        return self._m.messages.build(kind, turn, receiver)

    def ping(self, peer: Peer, turn: Turn) -> Envelope:
        return self._m.detector.ping(peer, turn)


class Membership:
    """One node's view of the cluster: ``tick``, ``receive`` and each command return a Step."""

    def __init__(
        self,
        config: MembershipConfig,
        myself: Peer,
        now: int,
        *,
        random: _random.Random | None = None,
        remembered: Remembered | None = None,
    ) -> None:
        view = self.view = View(config, myself, random or _random.Random())
        self.state = ClusterState(view, now)
        self.elections = Elections(view, _ElectionHost(self))
        self.gossip = Gossip(view, now)
        self.messages = Messages(view, self.gossip.fill, self.elections.message_flags)
        self.detector = FailureDetector(view, self.messages)
        self.claims = Claims(view, self.messages, self.elections.role_changed)
        myself.pong_received = now
        # A node starts alone, before anything remembered is loaded: at fail and,
        # as a primary, in a minority, so it waits the rejoin delay before serving.
        self.state.update(now, Outputs())
        if remembered is not None:
            self._remember(remembered, now)

    def _remember(self, saved: Remembered, now: int) -> None:
        view = self.view
        view.current_epoch = saved.current_epoch
        self.elections.last_vote_epoch = saved.last_vote_epoch
        for peer in saved.peers:
            view.add(peer)
            self.detector.schedule(peer, now)
        for node_id, slots in saved.slots.items():
            for slot in slots:
                view.slots.assign(slot, node_id)
        self.state.restored = bool(saved.peers)
        self.state.pending = True

    # ---- the view, read only ----------------------------------------------------------

    @property
    def config(self) -> MembershipConfig:
        """Timing and policy."""
        return self.view.config

    @property
    def myself(self) -> Peer:
        """This node."""
        return self.view.myself

    @property
    def id(self) -> bytes:
        """This node's id."""
        return self.view.myself.id

    @property
    def nodes(self) -> dict[bytes, Peer]:
        """Every known node, this one included (do not modify)."""
        return self.view.nodes

    @property
    def slots(self) -> SlotTable:
        """Who owns each slot (do not modify)."""
        return self.view.slots

    @property
    def current_epoch(self) -> int:
        """The highest epoch this node has seen."""
        return self.view.current_epoch

    @property
    def last_vote_epoch(self) -> int:
        """The last epoch this node voted in."""
        return self.elections.last_vote_epoch

    @property
    def ok(self) -> bool:
        """The cluster state: this node may serve its slots."""
        return self.view.ok

    @property
    def size(self) -> int:
        """How many known primaries own slots."""
        return self.view.size

    def peers(self) -> Iterable[Peer]:
        """Every known node except this one."""
        return self.view.peers()

    def my_primary(self) -> Peer | None:
        """The primary this node replicates, if it is a replica."""
        return self.view.my_primary()

    def owner_of(self, slot: int) -> Peer | None:
        """The node that serves ``slot``, if known."""
        return self.view.owner_of(slot)

    def slot_ranges(self, node_id: bytes) -> list[tuple[int, int]]:
        """The slots of a node as inclusive ranges."""
        return self.view.slot_ranges(node_id)

    def writes_paused(self, now: int) -> bool:
        """Writes wait: a replica is catching up for a manual failover."""
        return self.elections.writes_paused(now)

    @property
    def pause_set(self) -> bool:
        """A manual failover's pause is set, perhaps run out: writes ask this before any clock."""
        return bool(self.elections.mf_paused_until)

    # ---- inputs: the clock and the bus -------------------------------------------------

    def tick(self, now: int, inputs: Inputs = NO_INPUTS) -> Step:
        """Advance time: send due pings, detect timeouts, run elections, update state."""
        turn = Turn(now, inputs)
        self.state.note_tick(turn)
        for peer, kind in self.gossip.probes(now):
            turn.send(self.detector.ping(peer, turn, kind))
        self.elections.tick(turn)
        self.detector.run_due(turn)
        for node_id in proxies.departed(self.view, now):
            commands.drop(self.view, self.detector, node_id, now, turn)
        return self._settled(turn)

    def receive(self, msg: bus_pb2.BusMessage, now: int, inputs: Inputs = NO_INPUTS) -> Step:
        """Process one message; the step's reply is the PONG due to a PING or MEET."""
        turn = Turn(now, inputs)
        reply = self._receive(msg, turn)
        return self._settled(turn, reply)

    def _receive(self, msg: bus_pb2.BusMessage, turn: Turn) -> bus_pb2.BusMessage | None:
        view = self.view
        header = msg.header
        sender_id = bytes(header.sender)
        if sender_id == view.id or len(sender_id) == 0:
            return None
        sender = view.nodes.get(sender_id)
        if sender is None and msg.type == MEET:
            sender = self._add(Peer(id=sender_id, address=Address.from_proto(header.address)), turn)
        if sender is None:
            # Unknown nodes may not join by PING; only an operator's MEET adds them. Nothing
            # else they say counts either, their current epoch included (as in Redis): any
            # client of the bus port could otherwise push every epoch to its maximum.
            return self.messages.build(PONG, turn, None) if msg.type == PING else None
        self.claims.observe_epoch(header.current_epoch, turn)
        reply = self.messages.build(PONG, turn, sender) if msg.type in (PING, MEET) else None
        self._relocate(sender, header.address, turn)
        self.detector.heard_from(sender, msg.type, turn.now, turn)
        self.claims.apply_header(sender, header, turn)
        if sender.id == view.myself.primary_id:
            self.elections.on_primary_header(header)
        self._dispatch(msg, sender, turn)
        return reply

    def _dispatch(self, msg: bus_pb2.BusMessage, sender: Peer, turn: Turn) -> None:
        """What the message is about, beyond the header every message carries."""
        kind = msg.type
        if kind in GOSSIPING:
            self._learn(sender, msg.gossip, turn)
        elif kind == FAIL_MSG:
            failing = self._subject(msg)
            if failing is not None:
                self.detector.fail_announced(failing, turn.now, turn)
        elif kind == REPORT:
            suspect = self._subject(msg)
            if suspect is not None:
                self.detector.suspicion(sender, suspect, turn)
        elif kind == UPDATE:
            self.claims.apply_update(msg.update, turn)
        elif kind == AUTH_REQUEST:
            self.elections.on_auth_request(sender, msg.header, turn)
        elif kind == AUTH_ACK:
            self.elections.on_auth_ack(sender, msg.header, turn)
        elif kind == MFSTART:
            self.elections.on_mfstart(sender, turn)
        elif kind == LEAVE and proxies.may_leave(self.view, sender):
            commands.drop(self.view, self.detector, sender.id, turn.now, turn)

    def _subject(self, msg: bus_pb2.BusMessage) -> Peer | None:
        """The other node a FAIL or REPORT is about, if we know it."""
        node = self.view.nodes.get(bytes(msg.failing))
        return None if node is self.view.myself else node

    def _learn(self, sender: Peer, entries: Iterable[bus_pb2.GossipEntry], turn: Turn) -> None:
        """What a gossip section says about other nodes: new nodes, claims, suspicions."""
        view = self.view
        for entry in entries:
            node_id = bytes(entry.node)
            if node_id == view.id:
                continue
            node = view.nodes.get(node_id)
            if node is None:
                if not view.banned(node_id, turn.now):
                    self._discover(node_id, entry, turn)
                continue
            self.claims.apply_gossiped(node, entry, turn)
            if entry.flags & FAILING:
                self.detector.suspicion(sender, node, turn)
            else:
                # The sender sees the node healthy: its report, if any, no longer counts.
                node.fail_reports.pop(sender.id, None)
                if node.failing:
                    self._relocate(node, entry.address, turn)

    def _discover(self, node_id: bytes, entry: bus_pb2.GossipEntry, turn: Turn) -> None:
        """A node first heard of in gossip: add it, unless it is said to be failing."""
        if entry.flags & FAILING or not entry.address.host:
            return
        node = self._add(Peer(id=node_id, address=Address.from_proto(entry.address)), turn)
        node.flags = entry.flags & ROLE or PRIMARY
        self.claims.apply_gossiped(node, entry, turn)
        self.gossip.introduce(node_id)

    def _add(self, peer: Peer, turn: Turn) -> Peer:
        self.view.add(peer)
        turn.changed()
        self.detector.schedule(peer, turn.now)
        return peer

    @staticmethod
    def _relocate(node: Peer, address: bus_pb2.NodeAddress, out: Outputs) -> None:
        """A node says (or gossip says) it listens somewhere else now."""
        moved = Address.from_proto(address)
        if moved.host and moved != node.address:
            node.address = moved
            out.persist = True

    def _settled(self, turn: Turn, reply: bus_pb2.BusMessage | None = None) -> Step:
        """End a step that has a clock: recompute the cluster state if anything moved it."""
        if turn.recheck or self.state.pending:
            self.state.update(turn.now, turn)
        return turn.step(reply)

    def _deferred(self, out: Outputs) -> Step:
        """End a step without a clock: the next tick recomputes the cluster state."""
        if out.recheck:
            self.state.pending = True
        return out.step()

    # ---- inputs: operator commands (see :mod:`commands`) -------------------------------

    def meet_message(self, now: int, inputs: Inputs = NO_INPUTS) -> bus_pb2.BusMessage:
        """The MEET to send to a node an operator introduced."""
        return self.messages.build(MEET, Turn(now, inputs), None)

    def complete_meet(
        self, reply: bus_pb2.BusMessage, now: int, inputs: Inputs = NO_INPUTS
    ) -> Step:
        """Add the node that answered our MEET, then process its PONG normally."""
        commands.check_meet_reply(self.view, reply)
        turn = Turn(now, inputs)
        header = reply.header
        if header.sender not in self.view.nodes:
            self._add(Peer(id=header.sender, address=Address.from_proto(header.address)), turn)
        self._receive(reply, turn)
        return self._settled(turn)

    def add_slots(self, slots: Iterable[int]) -> Step:
        """Claim unassigned slots; refuse the whole request if any is taken or invalid."""
        out = Outputs()
        commands.add_slots(self.view, self.claims, slots, out)
        return self._deferred(out)

    def set_config_epoch(self, epoch: int) -> Step:
        """Set the first config epoch of a node in a new cluster."""
        out = Outputs()
        commands.set_config_epoch(self.view, self.claims, epoch, out)
        return self._deferred(out)

    def claim_slots(self, slots: Iterable[int], now: int) -> Step:
        """Take ``slots`` now, whoever owns them, under a new config epoch."""
        turn = Turn(now)
        commands.claim_slots(self.view, self.claims, slots, turn)
        return self._settled(turn)

    def apply_claim(self, node_id: bytes, epoch: int, slots: Iterable[int], now: int) -> Step:
        """Adopt ``node_id``'s claim on ``slots`` at ``epoch`` now (a migration's source)."""
        turn = Turn(now)
        commands.apply_claim(self.view, self.claims, node_id, epoch, slots, turn)
        return self._settled(turn)

    def replicate(self, primary_id: bytes, now: int) -> Step:
        """Become a replica of ``primary_id`` (Redis's CLUSTER REPLICATE)."""
        turn = Turn(now)
        commands.replicate(self.view, self.claims, primary_id, turn)
        return self._settled(turn)

    def forget(self, node_id: bytes, now: int) -> Step:
        """Remove a node from the view and ignore it in gossip for a while (CLUSTER FORGET)."""
        turn = Turn(now)
        commands.forget(self.view, self.detector, node_id, now, turn)
        return self._settled(turn)

    def leave(self, now: int, inputs: Inputs = NO_INPUTS) -> Step:
        """A stopping proxy's LEAVE to every node, so that none keeps it as a failed member."""
        if not self.view.myself.is_proxy:
            raise ClusterError("only a proxy leaves by itself; del-node removes other nodes")
        turn = Turn(now, inputs)
        for peer in list(self.view.peers()):
            turn.send(self.messages.to(peer, LEAVE, turn))
        return turn.step()

    def manual_failover(self, mode: FailoverMode, now: int, inputs: Inputs = NO_INPUTS) -> Step:
        """Start a manual failover on this replica (see :mod:`failover`)."""
        turn = Turn(now, inputs)
        commands.manual_failover(self.elections, mode, turn)
        return self._settled(turn)

    def stand_alone(self) -> Step:
        """Own every slot and be ok at once, for good: a standalone node is a cluster of one.

        The writable and rejoin delays of a cluster node give its peers time
        to reconfigure it; a cluster of one has no peers. It is never
        ticked, so nothing changes this again.
        """
        out = Outputs()
        commands.add_slots(self.view, self.claims, range(SLOT_COUNT), out)
        self.view.ok = True
        return out.step()

    def announce(self, now: int, inputs: Inputs = NO_INPUTS) -> Step:
        """Ping every known node, as a restarted node does to rejoin quickly."""
        turn = Turn(now, inputs)
        for peer in list(self.view.peers()):
            turn.send(self.detector.ping(peer, turn))
        return self._settled(turn)


__all__ = ["ClusterError", "Membership", "Remembered"]
