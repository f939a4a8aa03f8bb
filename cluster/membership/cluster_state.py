"""The cluster state: whether this node may serve, ok or fail, as in Redis.

A node says ok when it can reach a majority of the slot-owning primaries
and, with ``require_full_coverage``, every slot has an owner that is not
FAIL. A node that may have missed a configuration change (restored from
disk, stood still, back from a minority partition) stays at fail for a
short delay, so it hears of a failover before it serves again.
"""

from __future__ import annotations

from ..membership.model import FAIL, FAILING
from ..membership.step import Outputs, StateChanged, Turn
from ..membership.view import View

# After a restart, the cluster state stays fail this long (at most) so the
# node hears about configuration changes it missed before it serves again.
WRITABLE_DELAY_MS = 2_000
# A primary back from a minority partition waits this long (Redis: node_timeout
# clamped to 0.5-5 s) before serving, to hear of a failover it missed first.
REJOIN_DELAY_MIN_MS = 500
REJOIN_DELAY_MAX_MS = 5_000


class ClusterState:
    """Recomputes the view's ``ok`` and ``size`` whenever what they depend on moved."""

    def __init__(self, view: View, now: int) -> None:
        self._view = view
        # Set when the view was restored from disk, or the node stood still.
        self.restored = False
        self.started_at = now
        # When tick() last ran: a long gap means this node stood still.
        self._last_tick = now
        # When this primary last could not reach a majority of primaries.
        self._minority_at = 0
        # Recompute at the end of the next step that has a clock.
        self.pending = True

    def note_tick(self, turn: Turn) -> None:
        """A tick: notice whether this node stood still since the last one."""
        cfg = self._view.config
        if turn.now - self._last_tick > cfg.tick_ms + cfg.node_timeout_ms:
            self._resumed(turn)
        self._last_tick = turn.now

    def _resumed(self, turn: Turn) -> None:
        """This node stood still for longer than node_timeout (a stopped process, a huge stall).

        Its peers may have failed it over meanwhile, and until it hears from
        them it would serve slots it no longer owns. As after a restart, its
        state stays fail for the writable delay, so that it hears first.
        """
        self.restored = True
        self.started_at = turn.now
        self.pending = True
        view = self._view
        if view.ok:
            view.ok = False
            turn.emit(StateChanged(False))

    def update(self, now: int, out: Outputs) -> None:
        """Recompute ok and size; a flip is an event."""
        self.pending = False
        view = self._view
        cfg = view.config
        nodes = view.nodes
        owners = view.slots.owners()
        # The electorate: slot-owning primaries (never a proxy, see View.is_voter).
        voters = [nodes[i] for i in owners if i in nodes and view.is_voter(nodes[i])]
        view.size = len(voters)
        reachable = sum(1 for node in voters if not node.flags & FAILING)
        majority = reachable >= view.size // 2 + 1
        if not majority and view.myself.is_primary:
            self._minority_at = now
        ok = view.size > 0 and majority
        if ok and cfg.require_full_coverage:
            ok = view.slots.unassigned() == 0 and all(
                not nodes[node_id].flags & FAIL for node_id in owners if node_id in nodes
            )
        if (
            ok
            and not view.ok
            and self.restored
            and now - self.started_at < min(WRITABLE_DELAY_MS, cfg.node_timeout_ms)
        ):
            ok = False
            self.pending = True  # look again on the next tick
        rejoin_delay = min(max(cfg.node_timeout_ms, REJOIN_DELAY_MIN_MS), REJOIN_DELAY_MAX_MS)
        if ok and not view.ok and self._minority_at and now - self._minority_at < rejoin_delay:
            ok = False
            self.pending = True
        if ok != view.ok:
            view.ok = ok
            out.emit(StateChanged(ok))


__all__ = ["REJOIN_DELAY_MAX_MS", "REJOIN_DELAY_MIN_MS", "WRITABLE_DELAY_MS", "ClusterState"]
