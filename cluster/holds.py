"""Writes that must wait: a migration's handoff holds its slots, a manual failover the node.

A held write waits here instead of polling: whoever ends a hold (the
migration source releasing its slots, the node noticing its failover pause
is over) calls :meth:`WriteHolds.changed`, which wakes every waiter at once
to look again. A waiter gives up after its limit; what happens then (refuse,
or route the write again) is the routing decision's call, not this module's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence


class WriteHolds:
    """The slots whose writes are held, the node-wide pause, and the waiters on both."""

    def __init__(self, paused: Callable[[], bool] = lambda: False) -> None:
        #: Slots in a migration handoff: writes wait, then are refused (retryable).
        self.slots: set[int] = set()
        # Whether a manual failover pauses every write of this primary right now.
        self._paused = paused
        self._changed = asyncio.Event()

    @property
    def active(self) -> bool:
        """Some write is held right now (a handoff, or the node-wide pause)."""
        return bool(self.slots) or self._paused()

    def handing_off(self, slot: int) -> bool:
        """Writes to ``slot`` are held for a migration's handoff."""
        return slot in self.slots

    def held(self, slots: Sequence[int]) -> bool:
        """A write to ``slots`` must wait now."""
        if self._paused():
            return True
        held = self.slots
        return bool(held) and any(s in held for s in slots)

    def hold(self, slots: Iterable[int]) -> None:
        """Start holding writes to ``slots`` (a handoff begins)."""
        self.slots.update(slots)

    def release(self, slots: Iterable[int]) -> None:
        """Stop holding ``slots`` and wake the writes waiting on them."""
        self.slots.difference_update(slots)
        self.changed()

    def changed(self) -> None:
        """Something that holds writes may have ended: every waiter looks again."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, slots: Sequence[int], limit_s: float) -> bool:
        """Wait while writes to ``slots`` are held, at most ``limit_s``; True once released."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        while self.held(slots):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return not self.held(slots)
        return True
