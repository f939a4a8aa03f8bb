"""What every rebalance or reshard plan must keep, whatever cluster it was made for."""

from __future__ import annotations

from collections import Counter

from slotcache.ctl.rebalance_plan import Move, Plan, PrimaryLoad, apply_moves


def after_counts(primaries: list[PrimaryLoad], plan: Plan) -> dict[str, int]:
    """Slots per primary once the plan's moves are applied (which also checks they apply)."""
    result = apply_moves({p.id: p.slots for p in primaries}, plan.moves)
    return {node: len(slots) for node, slots in result.items()}


def assert_sound(primaries: list[PrimaryLoad], moves: tuple[Move, ...] | list[Move]) -> None:
    """Every slot keeps exactly one owner, moves at most once, and only from its owner."""
    result = apply_moves({p.id: p.slots for p in primaries}, moves)  # raises on a bad move
    owners = Counter(s for slots in result.values() for s in slots)
    assert sorted(owners) == sorted(s for p in primaries for s in p.slots)
    assert all(c == 1 for c in owners.values())
    moved = [s for m in moves for s in m.slots]
    assert len(moved) == len(set(moved)), "a slot moved twice"
    assert all(m.source != m.target and m.slots for m in moves)
