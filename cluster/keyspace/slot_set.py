"""An indexable set of slot numbers, so a random non-empty slot costs O(1)."""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator

from slotcache.contract import SLOT_COUNT


class SlotSet:
    """A set of slots in ``0..16383`` supporting O(1) add, discard and random choice."""

    __slots__ = ("_members", "_pos")

    def __init__(self) -> None:
        self._members: list[int] = []
        self._pos = array("i", [-1]) * SLOT_COUNT

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, slot: int) -> bool:
        return self._pos[slot] >= 0

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self._members))

    def add(self, slot: int) -> None:
        """Add ``slot`` (no-op if present)."""
        if self._pos[slot] < 0:
            self._pos[slot] = len(self._members)
            self._members.append(slot)

    def discard(self, slot: int) -> None:
        """Remove ``slot`` (no-op if absent)."""
        i = self._pos[slot]
        if i < 0:
            return
        last = self._members.pop()
        if last != slot:
            self._members[i] = last
            self._pos[last] = i
        self._pos[slot] = -1

    def random_member(self, random: Callable[[], float]) -> int:
        """Return a uniformly chosen member; the set must not be empty."""
        return self._members[int(random() * len(self._members))]
