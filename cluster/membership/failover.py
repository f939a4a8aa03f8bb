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
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from ..membership.model import FAIL, PRIMARY, REPLICA, Peer
from ..membership.slot_table import expand
from ..wire import bus_pb2

if TYPE_CHECKING:
    from ..membership.machine import Envelope, Membership

AUTH_REQUEST = bus_pb2.MESSAGE_TYPE_FAILOVER_AUTH_REQUEST
AUTH_ACK = bus_pb2.MESSAGE_TYPE_FAILOVER_AUTH_ACK
MFSTART = bus_pb2.MESSAGE_TYPE_MFSTART
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


class Elections:
    """Election state of one node: as a replica (candidate) and as a primary (voter)."""

    def __init__(self, membership: Membership) -> None:
        self.m = membership
        # Candidate side.
        self.auth_time = 0
        self.auth_sent = False
        self.auth_epoch = 0
        self.rank = 0
        self.votes: set[bytes] = set()
        self.mf_end = 0
        self.mf_can_start = False
        self.mf_primary_offset = -1
        # How long the replication link to our primary has been down (the runtime knows).
        self.primary_link_age_ms = 0
        # Voter side: primary id -> when we last voted for one of its replicas.
        self.voted_time: dict[bytes, int] = {}
        self.mf_paused_until = 0
        self.mf_replica = b""
        self.last_refusal = ""

    # ---- timing ------------------------------------------------------------------

    @property
    def _timeout(self) -> int:
        return self.m.config.node_timeout_ms

    @property
    def election_timeout_ms(self) -> int:
        """How long a candidate waits for votes before giving up on this epoch."""
        return max(2 * self._timeout, 500)

    def _delay(self, rank: int) -> int:
        base = min(500, self._timeout // 10)
        jitter = int(self.m.rng.random() * base)
        return base + jitter + rank * min(1000, self._timeout // 5)

    def _rank(self, primary: Peer) -> int:
        """How many replicas of the same primary have more data than this one."""
        mine = self.m.replication_offset()
        return sum(
            1
            for p in self.m.peers()
            if p.flags & REPLICA and p.primary == primary.id and p.repl_offset > mine
        )

    # ---- the primary side: pausing for a manual failover -------------------------------

    def writes_paused(self, now: int) -> bool:
        """A primary holds writes while its replica catches up for a manual failover."""
        return self.m.myself.is_primary and self.mf_paused_until > now

    def message_flags(self, now: int) -> int:
        """Flags for our outgoing headers."""
        return PAUSED if self.writes_paused(now) else 0

    def on_mfstart(self, sender: Peer, now: int, out: list[Envelope]) -> None:
        """Our replica asks us to pause so it can take over without losing writes."""
        m = self.m
        if not m.myself.is_primary or sender.primary != m.id:
            return
        self.mf_paused_until = now + MANUAL_FAILOVER_TIMEOUT_MS
        self.mf_replica = sender.id
        # Tell it at once where we stopped; the paused offset is final.
        out.append(m.ping(sender, now))

    # ---- the candidate side ---------------------------------------------------------

    def start_manual(self, mode: FailoverMode, now: int, out: list[Envelope]) -> None:
        """Begin a manual failover on this replica."""
        m = self.m
        primary = m.my_primary()
        if primary is None:
            raise ValueError("only a replica with a known primary can fail over")
        if mode is FailoverMode.TAKEOVER:
            m.current_epoch += 1
            self.auth_epoch = m.current_epoch
            self._promote(primary, now, out)
            return
        self.reset_election()
        self.mf_end = now + MANUAL_FAILOVER_TIMEOUT_MS
        self.mf_can_start = mode is FailoverMode.FORCE
        self.mf_primary_offset = -1
        if mode is FailoverMode.GRACEFUL:
            out.append(m.envelope(primary, MFSTART, now))

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

    def tick(self, now: int, out: list[Envelope]) -> None:
        """Advance a replica's election; expire manual failovers on both sides."""
        m = self.m
        if self.mf_paused_until and now > self.mf_paused_until:
            self.reset_manual()
        if m.myself.is_primary:
            return
        primary = m.my_primary()
        if primary is None:
            return
        if self.mf_end:
            if now > self.mf_end:
                self.reset_manual()
                self.reset_election()
                self.last_refusal = "manual failover timed out"
            elif (
                not self.mf_can_start
                and self.mf_primary_offset >= 0
                and m.replication_offset() >= self.mf_primary_offset
            ):
                self.mf_can_start = True
        manual = bool(self.mf_end) and self.mf_can_start
        if not manual:
            if not primary.flags & FAIL or m.slots.count(primary.id) == 0:
                self.reset_election()
                return
            validity = self._timeout * REPLICA_VALIDITY_FACTOR + 1000
            if self.primary_link_age_ms > validity:
                self.last_refusal = "replica data too old to stand for election"
                return
        if not self.auth_time or now - self.auth_time > 2 * self.election_timeout_ms:
            self.reset_election()
            self.rank = 0 if manual else self._rank(primary)
            self.auth_time = now if manual else now + self._delay(self.rank)
            if not manual:
                return
        if not self.auth_sent:
            if now < self.auth_time:
                rank = self._rank(primary)
                if rank > self.rank:  # others turned out to have more data: let them go first
                    self.auth_time += (rank - self.rank) * min(1000, self._timeout // 5)
                    self.rank = rank
                return
            self._request_votes(primary, manual, now, out)
            return
        if len(self.votes) >= m.size // 2 + 1:
            self._promote(primary, now, out)

    def _request_votes(self, primary: Peer, manual: bool, now: int, out: list[Envelope]) -> None:
        m = self.m
        m.current_epoch += 1
        m.config_dirty = True
        self.auth_epoch = m.current_epoch
        self.auth_sent = True
        request = m.message(AUTH_REQUEST, now, None)
        header = request.header
        # Claim the primary's slots at its config epoch, so voters can check the claim is current.
        del header.slots[:]
        header.slots.extend(m.slots.flat_ranges(primary.id))
        header.config_epoch = primary.config_epoch
        if manual:
            header.mflags |= FORCEACK
        out.extend(m.envelope_of(p, request) for p in m.peers() if p.is_primary)

    def on_auth_ack(
        self, sender: Peer, header: bus_pb2.Header, now: int, out: list[Envelope]
    ) -> None:
        """A primary voted for us."""
        m = self.m
        if (
            not self.auth_sent
            or not m.is_voter(sender)
            or header.current_epoch < self.auth_epoch
            or now - self.auth_time > self.election_timeout_ms
        ):
            return
        self.votes.add(sender.id)
        primary = m.my_primary()
        if primary is not None and len(self.votes) >= m.size // 2 + 1:
            self._promote(primary, now, out)

    def _promote(self, primary: Peer, now: int, out: list[Envelope]) -> None:
        """Become the primary of ``primary``'s slots under the election epoch."""
        m = self.m
        me = m.myself
        me.flags = (me.flags & ~REPLICA) | PRIMARY
        me.primary = b""
        me.config_epoch = max(me.config_epoch, self.auth_epoch)
        for slot in m.slots.slots_of(primary.id):
            m.slots.assign(slot, m.id)
        self.reset_election()
        self.reset_manual()
        m.promoted(primary, now, out)

    # ---- the voter side ---------------------------------------------------------------

    def on_auth_request(
        self, sender: Peer, header: bus_pb2.Header, now: int, out: list[Envelope]
    ) -> None:
        """Vote for ``sender`` if Redis's rules allow it.

        The runtime persists the vote before sending the acknowledgement, so a
        restart cannot make this node vote twice in one epoch.
        """
        m = self.m
        refusal = self._refusal(sender, header, now)
        if refusal:
            self.last_refusal = refusal
            return
        m.last_vote_epoch = m.current_epoch
        self.voted_time[bytes(header.primary)] = now
        m.config_dirty = True
        out.append(m.envelope(sender, AUTH_ACK, now))

    def _refusal(self, sender: Peer, header: bus_pb2.Header, now: int) -> str:
        m = self.m
        if not m.is_voter(m.myself):
            return "not a slot-owning primary"
        if header.current_epoch < m.current_epoch:
            return "request epoch is older than ours"
        if m.last_vote_epoch == m.current_epoch:
            return f"already voted in epoch {m.current_epoch}"
        if not header.flags & REPLICA:
            return "the candidate is not a replica"
        primary = m.nodes.get(bytes(header.primary))
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
            owner = m.slots.owner(slot)
            if owner is not None and m.nodes[owner].config_epoch > header.config_epoch:
                return f"slot {slot} has a newer owner"
        return ""
