"""Which node owns each slot, with the ranges encoding used on the wire."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from slotcache.contract import SLOT_COUNT, to_ranges


def flatten(ranges: Iterable[tuple[int, int]]) -> list[int]:
    """Ranges as the flat ``start, end, start, end`` list carried in headers."""
    out: list[int] = []
    for start, end in ranges:
        out.extend((start, end))
    return out


def expand(flat: Sequence[int]) -> Iterator[int]:
    """Every slot of a flat range list, validating it on the way."""
    if len(flat) % 2:
        raise ValueError("slot ranges must come in start/end pairs")
    for i in range(0, len(flat), 2):
        start, end = flat[i], flat[i + 1]
        if not 0 <= start <= end < SLOT_COUNT:
            raise ValueError(f"slot range {start}-{end} is outside 0..{SLOT_COUNT - 1}")
        yield from range(start, end + 1)


class SlotTable:
    """Owner per slot, plus each owner's slot set. Single-threaded; owned by membership."""

    __slots__ = ("_members", "_owners", "_ranges")

    def __init__(self) -> None:
        self._owners: list[bytes | None] = [None] * SLOT_COUNT
        self._members: dict[bytes, set[int]] = {}
        # Flat ranges per node, computed on demand: every header carries them.
        self._ranges: dict[bytes, list[int]] = {}

    def owner(self, slot: int) -> bytes | None:
        """The node that owns ``slot``, or None."""
        return self._owners[slot]

    def assign(self, slot: int, node: bytes | None) -> bytes | None:
        """Give ``slot`` to ``node`` (None unassigns); return the previous owner."""
        previous = self._owners[slot]
        if previous == node:
            return previous
        if previous is not None:
            self._ranges.pop(previous, None)
            members = self._members[previous]
            members.discard(slot)
            if not members:
                del self._members[previous]
        if node is not None:
            self._ranges.pop(node, None)
            self._members.setdefault(node, set()).add(slot)
        self._owners[slot] = node
        return previous

    def count(self, node: bytes) -> int:
        """How many slots ``node`` owns."""
        members = self._members.get(node)
        return len(members) if members else 0

    def owners(self) -> dict[bytes, int]:
        """Slot counts of every node that owns at least one slot."""
        return {node: len(members) for node, members in self._members.items()}

    def slots_of(self, node: bytes) -> list[int]:
        """The slots ``node`` owns, ascending."""
        return sorted(self._members.get(node, ()))

    def flat_ranges(self, node: bytes) -> list[int]:
        """The slots of ``node`` as flat ``start, end`` pairs (cached until they change)."""
        cached = self._ranges.get(node)
        if cached is None:
            cached = self._ranges[node] = flatten(to_ranges(self._members.get(node, ())))
        return cached

    def unassigned(self) -> int:
        """How many slots have no owner."""
        return SLOT_COUNT - sum(len(m) for m in self._members.values())

    def snapshot(self) -> list[bytes | None]:
        """A copy of the owner array, for routing tables."""
        return list(self._owners)
