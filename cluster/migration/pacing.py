"""How much of a node's time a slot migration may take while clients are being served.

A migration copies as fast as the loop allows, which on a busy machine
takes the CPU from the clients. While a node serves clients (its operation
counter moved since the last piece of copying), the copy pauses after each
piece for long enough that it uses at most ``share`` of the time; an idle
node copies at full speed. Both sides pace: the source after each snapshot
chunk, the target after each loading slice.
"""

from __future__ import annotations

from collections.abc import Callable


class Pacer:
    """Decides the pause after each piece of copying (no I/O; the caller sleeps).

    ``activity`` returns a counter that moves while clients are served; None
    means pace always.
    """

    def __init__(self, share: float, activity: Callable[[], int] | None = None) -> None:
        if not 0.0 < share <= 1.0:
            raise ValueError("the migration's CPU share must be in (0, 1]")
        self.share = share
        self._activity = activity
        self._seen = activity() if activity is not None else 0
        # Seconds paused so far, for the log.
        self.paused_s = 0.0

    def pause_after(self, work_s: float) -> float:
        """Seconds to pause after a piece of copying that took ``work_s``."""
        if self.share >= 1.0:
            return 0.0
        if self._activity is not None:
            now = self._activity()
            busy = now != self._seen
            self._seen = now
            if not busy:
                return 0.0
        pause = work_s * (1.0 - self.share) / self.share
        self.paused_s += pause
        return pause
