"""Failure detection: ping clocks, PFAIL, failure reports and FAIL.

A probe unanswered for node_timeout marks the peer PFAIL. A slot-owning
primary that marks a peer PFAIL sends one failure report to every primary
(Redis relies on all-to-all pings to carry reports; with random probing a
node hears from too few peers within 2 x node_timeout to collect a
majority). A node that hears a report, or sees the suspicion in gossip,
probes the suspect itself and, since the suspect has already been silent to
someone for node_timeout, confirms PFAIL after node_timeout/2. When a
majority of slot-owning primaries report PFAIL within 2 x node_timeout, the
peer is marked FAIL and the FAIL is broadcast, as in Redis.
"""

from __future__ import annotations

import heapq

from ..membership.messages import FAIL_MSG, MEET, PING, PONG, REPORT, Messages, MessageType
from ..membership.model import FAIL, FAILING, PFAIL, Peer
from ..membership.step import Envelope, NodeFailed, Outputs, Turn
from ..membership.view import View

# About how many primaries broadcast a FAIL verdict they reached themselves.
FAIL_BROADCASTERS = 8


class FailureDetector:
    """Whom to ping when, and when silence becomes a verdict."""

    def __init__(self, view: View, messages: Messages) -> None:
        self._view = view
        self._config = view.config
        self._messages = messages
        # Peers ordered by when they next need attention; entries are re-checked
        # when popped, so stale entries are harmless.
        self._due: list[tuple[int, bytes]] = []

    # ---- pings ------------------------------------------------------------------

    def ping(self, peer: Peer, turn: Turn, kind: MessageType = PING) -> Envelope:
        """A PING (or MEET) to ``peer``, starting its ping clock if none is outstanding.

        A proxy always sends MEET, which a node that knows it treats as a
        PING: should the others have forgotten it (see :mod:`proxies`) while
        it was cut off, its next probe makes it a member again.
        """
        now = turn.now
        if kind == PING and self._view.myself.is_proxy:
            kind = MEET
        if not peer.ping_sent:
            peer.ping_sent = now
        peer.ping_attempt = now
        self.schedule(peer, now)
        return Envelope(peer.address, self._messages.build(kind, turn, peer), peer.id)

    def heard_from(self, sender: Peer, kind: MessageType, now: int, out: Outputs) -> None:
        """A message from ``sender``; a PONG is the evidence of life that clears suspicion."""
        if kind == PONG:
            sender.pong_received = now
            sender.ping_sent = 0
            if sender.flags & PFAIL:
                sender.flags &= ~PFAIL
                out.recheck = True
            if sender.flags & FAIL:
                self._clear_fail_if_needed(sender, now, out)
        self.schedule(sender, now)

    def run_due(self, turn: Turn) -> None:
        """Attend to every peer whose check is due: resend, refresh, or mark PFAIL."""
        due_list = self._due
        nodes = self._view.nodes
        me = self._view.myself
        now = turn.now
        while due_list and due_list[0][0] <= now:
            due, node_id = heapq.heappop(due_list)
            peer = nodes.get(node_id)
            if peer is None or peer is me or peer.due != due:
                continue  # removed, or rescheduled since
            self._attend(peer, turn)

    def schedule(self, peer: Peer, now: int) -> None:
        """Put ``peer``'s next check where its ping clock says."""
        cfg = self._config
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

    def _attend(self, peer: Peer, turn: Turn) -> None:
        """Do whatever ``peer`` needs now, then schedule its next check."""
        now = turn.now
        if peer.ping_sent:
            if not peer.flags & FAILING and now - peer.ping_sent >= self._pfail_after(peer):
                self._set_pfail(peer, turn)
            if now - peer.ping_attempt >= self._config.resend_ms:
                turn.send(self.ping(peer, turn))
        elif peer.flags & FAIL or now - peer.pong_received >= self._refresh_ms():
            # Keep knocking on failed nodes so their FAIL can be lifted when they
            # return, and keep direct contact with healthy ones (see _refresh_ms).
            turn.send(self.ping(peer, turn))
        self.schedule(peer, now)

    def _refresh_ms(self) -> int:
        """How stale a peer's last PONG may get before we ping it directly.

        node_timeout/2 as in Redis while the cluster is small, so detection
        starts from a recent ping; in large clusters the interval grows with
        N squared (10 ms x N^2), which keeps these pings to about N/(10 N^2)
        per millisecond and leaves failure detection to the random probes.
        """
        n = len(self._view.nodes)
        return max(self._config.node_timeout_ms // 2, 10 * n * n)

    def _pfail_after(self, peer: Peer) -> int:
        """How long a ping may go unanswered before the peer is PFAIL.

        node_timeout, or half of it when another primary already reported the
        peer: the peer has then been silent to someone for node_timeout already.
        """
        timeout = self._config.node_timeout_ms
        return timeout // 2 if peer.fail_reports else timeout

    # ---- verdicts -----------------------------------------------------------------

    def _set_pfail(self, peer: Peer, turn: Turn) -> None:
        view = self._view
        peer.flags |= PFAIL
        turn.recheck = True
        if view.is_voter(view.myself):
            report = self._messages.build(REPORT, turn, None)
            report.failing = peer.id
            for p in view.peers():
                if p is not peer and p.is_primary:
                    turn.send(Envelope(p.address, report, p.id))
        self._mark_failing_if_needed(peer, turn)

    def suspicion(self, reporter: Peer, suspect: Peer, turn: Turn) -> None:
        """``reporter`` sees ``suspect`` failing: record it and check it ourselves."""
        first_report = not suspect.fail_reports
        if self._view.is_voter(reporter):
            suspect.fail_reports[reporter.id] = turn.now
        if not suspect.ping_sent and not suspect.flags & FAIL:
            # Check the suspicion ourselves rather than take it on trust.
            turn.send(self.ping(suspect, turn))
        elif first_report and suspect.fail_reports and not suspect.flags & FAILING:
            # A ping was already outstanding: with a report in hand, PFAIL is now
            # due node_timeout/2 after it was sent, not node_timeout.
            self.schedule(suspect, turn.now)
        self._mark_failing_if_needed(suspect, turn)

    def _mark_failing_if_needed(self, node: Peer, turn: Turn) -> None:
        """Mark ``node`` FAIL when we see it PFAIL and a majority of primaries agree."""
        if not node.flags & PFAIL or node.flags & FAIL:
            return
        view = self._view
        horizon = turn.now - self._config.report_validity_ms
        nodes = view.nodes
        for reporter, at in list(node.fail_reports.items()):
            peer = nodes.get(reporter)
            if at < horizon or peer is None or not view.is_voter(peer):
                del node.fail_reports[reporter]
        votes = len(node.fail_reports) + view.is_voter(view.myself)
        if votes < view.size // 2 + 1:
            return
        self._set_fail(node, turn.now, turn)
        # Every primary receives the failure reports and reaches this verdict
        # on its own, at about the same moment; if each broadcast it, a
        # failure would cost N^2 messages. A few random broadcasters (about
        # FAIL_BROADCASTERS) tell the replicas and any primary that missed a report.
        if view.rng.random() < FAIL_BROADCASTERS / max(view.size, 1):
            message = self._messages.build(FAIL_MSG, turn, None)
            message.failing = node.id
            for p in view.peers():
                if p is not node:
                    turn.send(Envelope(p.address, message, p.id))

    def fail_announced(self, node: Peer, now: int, out: Outputs) -> None:
        """A FAIL message about ``node``: believe it, as Redis does."""
        if not node.flags & FAIL:
            self._set_fail(node, now, out)

    def _set_fail(self, node: Peer, now: int, out: Outputs) -> None:
        node.flags = (node.flags & ~PFAIL) | FAIL
        node.fail_time = now
        out.recheck = True
        out.emit(NodeFailed(node.id))

    def _clear_fail_if_needed(self, node: Peer, now: int, out: Outputs) -> None:
        """Lift FAIL from a node that answers again (Redis's clearNodeFailureIfNeeded)."""
        serves_slots = node.is_primary and self._view.slots.count(node.id) > 0
        if not serves_slots or now - node.fail_time > self._config.report_validity_ms:
            node.flags &= ~FAIL
            node.fail_reports.clear()
            out.recheck = True

    def forget(self, node_id: bytes) -> None:
        """A forgotten node's reports no longer count."""
        for peer in self._view.nodes.values():
            peer.fail_reports.pop(node_id, None)


__all__ = ["FAIL_BROADCASTERS", "FailureDetector"]
