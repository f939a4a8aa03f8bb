"""How much of the source's time a slot migration may take while clients are being served.

A migration copies as fast as the loop allows, which on a busy machine
takes the CPU from the clients: their throughput fell to a quarter during
the copy on two cores. While the node is serving clients, the copy pauses
after each chunk for long enough that it uses at most ``share`` of the
time; an idle node copies at full speed. Whether clients are being served
is read from the node's operation counter: it moved since the last chunk.
"""

from __future__ import annotations

from collections.abc import Callable


class Pacer:
    """Decides the pause after each snapshot chunk (no I/O; the caller sleeps)."""

    def __init__(self, share: float, activity: Callable[[], int]) -> None:
        if not 0.0 < share <= 1.0:
            raise ValueError("the migration's CPU share must be in (0, 1]")
        self.share = share
        self._activity = activity
        self._seen = activity()
        # Seconds paused so far, for the migration's record.
        self.paused_s = 0.0

    def pause_after(self, work_s: float) -> float:
        """Seconds to pause after a chunk that took ``work_s`` to copy."""
        now = self._activity()
        busy = now != self._seen
        self._seen = now
        if not busy or self.share >= 1.0:
            return 0.0
        pause = work_s * (1.0 - self.share) / self.share
        self.paused_s += pause
        return pause
