"""Replica promotion: elections, votes and manual failover (Redis Cluster's failover protocol).

A replica whose primary is FAIL waits a short delay that grows with its rank
(replicas with more data go first), bumps the current epoch and asks every
primary for its vote. A primary grants one vote per epoch (the vote is
persisted before the acknowledgement leaves), and at most one per failed
primary every 2 x node_timeout. A majority of slot-owning primaries makes
the replica the new primary: it takes the old primary's slots under the
election epoch, which outranks the old claim everywhere.

Manual failover pauses the primary's writes, lets the replica catch up to
the paused offset, then runs the same election with votes forced, so no
acknowledged write is lost. ``force`` skips the catching up (the primary may
be gone) and ``takeover`` skips the vote as well.

Delays scale with node_timeout: Redis's fixed 500 ms base and 1 s per rank
suit its 15 s default, and would dominate a 1 s timeout.

Elections read the view; the only changes they make elsewhere go through
:class:`ElectionHost` (a new epoch, a takeover, messages), so their effect
on the rest of membership is visible in one short list.
"""

from __future__ import annotations

import enum
from typing import Protocol

from ..membership.messages import AUTH_ACK, AUTH_REQUEST, MFSTART, MessageType
from ..membership.model import FAIL, REPLICA, Peer
from ..membership.slot_table import expand
from ..membership.step import Envelope, Outputs, Turn
from ..membership.view import ReadView
from ..wire import bus_pb2

PAUSED = bus_pb2.MESSAGE_FLAG_PAUSED
FORCEACK = bus_pb2.MESSAGE_FLAG_FORCEACK

MANUAL_FAILOVER_TIMEOUT_MS = 5_000
# A replica whose link to its primary has been down longer than this many
# node timeouts holds data too old to stand for election (Redis's default).
REPLICA_VALIDITY_FACTOR = 10


class FailoverMode(enum.Enum):
    """How a manual failover goes about it."""

    GRACEFUL = "graceful"
    FORCE = "force"
    TAKEOVER = "takeover"


class ElectionHost(Protocol):
    """All elections may ask of the rest of membership; they change nothing else there."""

    def next_epoch(self, out: Outputs) -> int:
        """Bump the current epoch (persisted with the step) and return it."""

    def take_over(self, primary: Peer, epoch: int, turn: Turn) -> None:
        """Become the primary of ``primary``'s slots under ``epoch``, and announce it."""

    def message(self, kind: MessageType, turn: Turn, receiver: Peer | None) -> bus_pb2.BusMessage:
        """A message of ``kind`` with this node's header."""

    def ping(self, peer: Peer, turn: Turn) -> Envelope:
        """A PING to ``peer`` that starts its ping clock."""


class Elections:
    """Election state of one node: as a replica (candidate) and as a primary (voter)."""

    def __init__(self, view: ReadView, host: ElectionHost) -> None:
        self._view = view
        self._host = host
        # Candidate side.
        self.auth_time = 0
        self.auth_sent = False
        self.auth_epoch = 0
        self.rank = 0
        self.votes: set[bytes] = set()
        self.mf_end = 0
        self.mf_can_start = False
        self.mf_primary_offset = -1
        # Voter side. The last epoch we voted in is persisted with the node file.
        self.last_vote_epoch = 0
        # Primary id -> when we last voted for one of its replicas.
        self.voted_time: dict[bytes, int] = {}
        self.mf_paused_until = 0
        self.mf_replica = b""
        self.last_refusal = ""

    # ---- timing ------------------------------------------------------------------

    @property
    def _timeout(self) -> int:
        return self._view.config.node_timeout_ms

    @property
    def election_timeout_ms(self) -> int:
        """How long a candidate waits for votes before giving up on this epoch."""
        return max(2 * self._timeout, 500)

    def _delay(self, rank: int) -> int:
        base = min(500, self._timeout // 10)
        jitter = int(self._view.rng.random() * base)
        return base + jitter + rank * min(1000, self._timeout // 5)

    def _rank(self, primary: Peer, mine: int) -> int:
        """How many replicas of the same primary have more data than this one (at ``mine``)."""
        return sum(
            1
            for p in self._view.peers()
            if p.is_replica and p.primary_id == primary.id and p.repl_offset > mine
        )

    def _majority(self) -> int:
        return self._view.size // 2 + 1

    # ---- the primary side: pausing for a manual failover -------------------------------

    def writes_paused(self, now: int) -> bool:
        """A primary holds writes while its replica catches up for a manual failover."""
        return self._view.myself.is_primary and self.mf_paused_until > now

    def message_flags(self, now: int) -> int:
        """Flags for our outgoing headers."""
        return PAUSED if self.writes_paused(now) else 0

    def on_mfstart(self, sender: Peer, turn: Turn) -> None:
        """Our replica asks us to pause so it can take over without losing writes."""
        view = self._view
        if not view.myself.is_primary or sender.primary_id != view.id:
            return
        self.mf_paused_until = turn.now + MANUAL_FAILOVER_TIMEOUT_MS
        self.mf_replica = sender.id
        # Tell it at once where we stopped; the paused offset is final.
        turn.send(self._host.ping(sender, turn))

    # ---- the candidate side ---------------------------------------------------------

    def start_manual(self, mode: FailoverMode, turn: Turn) -> None:
        """Begin a manual failover on this replica."""
        primary = self._view.my_primary()
        if primary is None:
            raise ValueError("only a replica with a known primary can fail over")
        if mode is FailoverMode.TAKEOVER:
            self.auth_epoch = self._host.next_epoch(turn)
            self._host.take_over(primary, self.auth_epoch, turn)
            return
        self.reset_election()
        self.mf_end = turn.now + MANUAL_FAILOVER_TIMEOUT_MS
        self.mf_can_start = mode is FailoverMode.FORCE
        self.mf_primary_offset = -1
        if mode is FailoverMode.GRACEFUL:
            turn.send(
                Envelope(primary.address, self._host.message(MFSTART, turn, primary), primary.id)
            )

    def on_primary_header(self, header: bus_pb2.Header) -> None:
        """A message from our primary: note where it paused, if it did."""
        if self.mf_end and header.mflags & PAUSED:
            self.mf_primary_offset = header.repl_offset

    def reset_election(self) -> None:
        """Forget any election in progress."""
        self.auth_time = 0
        self.auth_sent = False
        self.votes.clear()

    def reset_manual(self) -> None:
        """End a manual failover, on either side."""
        self.mf_end = 0
        self.mf_can_start = False
        self.mf_primary_offset = -1
        self.mf_paused_until = 0
        self.mf_replica = b""

    def role_changed(self) -> None:
        """This node was promoted or follows another primary: what was under way is moot."""
        self.reset_election()
        self.reset_manual()

    def tick(self, turn: Turn) -> None:
        """Advance a replica's election; expire manual failovers on both sides."""
        now = turn.now
        view = self._view
        if self.mf_paused_until and now > self.mf_paused_until:
            self.reset_manual()
        if view.myself.is_primary:
            return
        primary = view.my_primary()
        if primary is None:
            return
        offset = turn.inputs.repl_offset
        if self.mf_end:
            if now > self.mf_end:
                self.reset_manual()
                self.reset_election()
                self.last_refusal = "manual failover timed out"
            elif (
                not self.mf_can_start
                and self.mf_primary_offset >= 0
                and offset >= self.mf_primary_offset
            ):
                self.mf_can_start = True
        manual = bool(self.mf_end) and self.mf_can_start
        if not manual:
            if not primary.flags & FAIL or view.slots.count(primary.id) == 0:
                self.reset_election()
                return
            validity = self._timeout * REPLICA_VALIDITY_FACTOR + 1000
            if turn.inputs.primary_link_age_ms > validity:
                self.last_refusal = "replica data too old to stand for election"
                return
        if not self.auth_time or now - self.auth_time > 2 * self.election_timeout_ms:
            self.reset_election()
            self.rank = 0 if manual else self._rank(primary, offset)
            self.auth_time = now if manual else now + self._delay(self.rank)
            if not manual:
                return
        if not self.auth_sent:
            if now < self.auth_time:
                rank = self._rank(primary, offset)
                if rank > self.rank:  # others turned out to have more data: let them go first
                    self.auth_time += (rank - self.rank) * min(1000, self._timeout // 5)
                    self.rank = rank
                return
            self._request_votes(primary, manual, turn)
            return
        if len(self.votes) >= self._majority():
            self._host.take_over(primary, self.auth_epoch, turn)

    def _request_votes(self, primary: Peer, manual: bool, turn: Turn) -> None:
        self.auth_epoch = self._host.next_epoch(turn)
        self.auth_sent = True
        request = self._host.message(AUTH_REQUEST, turn, None)
        header = request.header
        # Claim the primary's slots at its config epoch, so voters can check the claim is current.
        del header.slots[:]
        header.slots.extend(self._view.slots.flat_ranges(primary.id))
        header.config_epoch = primary.config_epoch
        if manual:
            header.mflags |= FORCEACK
        for p in self._view.peers():
            if p.is_primary:
                turn.send(Envelope(p.address, request, p.id))

    def on_auth_ack(self, sender: Peer, header: bus_pb2.Header, turn: Turn) -> None:
        """A primary voted for us."""
        view = self._view
        if (
            not self.auth_sent
            or not view.is_voter(sender)
            or header.current_epoch < self.auth_epoch
            or turn.now - self.auth_time > self.election_timeout_ms
        ):
            return
        self.votes.add(sender.id)
        primary = view.my_primary()
        if primary is not None and len(self.votes) >= self._majority():
            self._host.take_over(primary, self.auth_epoch, turn)

    # ---- the voter side ---------------------------------------------------------------

    def on_auth_request(self, sender: Peer, header: bus_pb2.Header, turn: Turn) -> None:
        """Vote for ``sender`` if Redis's rules allow it.

        The vote is persisted with the step, before the acknowledgement
        leaves, so a restart cannot make this node vote twice in one epoch.
        """
        refusal = self._refusal(header, turn.now)
        if refusal:
            self.last_refusal = refusal
            return
        self.last_vote_epoch = self._view.current_epoch
        self.voted_time[bytes(header.primary)] = turn.now
        turn.persist = True
        turn.send(Envelope(sender.address, self._host.message(AUTH_ACK, turn, sender), sender.id))

    def _refusal(self, header: bus_pb2.Header, now: int) -> str:
        view = self._view
        if not view.is_voter(view.myself):
            return "not a slot-owning primary"
        if header.current_epoch < view.current_epoch:
            return "request epoch is older than ours"
        if self.last_vote_epoch == view.current_epoch:
            return f"already voted in epoch {view.current_epoch}"
        if not header.flags & REPLICA:
            return "the candidate is not a replica"
        primary = view.nodes.get(bytes(header.primary))
        if primary is None:
            return "unknown primary"
        if not primary.flags & FAIL and not header.mflags & FORCEACK:
            return "the primary is not failing"
        last = self.voted_time.get(primary.id)
        if last is not None and now - last < 2 * self._timeout:
            return "voted for a replica of this primary recently"
        try:
            claimed = list(expand(header.slots))
        except ValueError:
            return "malformed slot claim"
        for slot in claimed:
            owner = view.slots.owner(slot)
            if owner is not None and view.nodes[owner].config_epoch > header.config_epoch:
                return f"slot {slot} has a newer owner"
        return ""


__all__ = [
    "MANUAL_FAILOVER_TIMEOUT_MS",
    "ElectionHost",
    "Elections",
    "FailoverMode",
]
