"""The reshard and rebalance planner against hundreds of generated clusters (hypothesis).

Every generated cluster covers all 16384 slots and the planner is run on each
one, which takes seconds per test, so this runs outside the unit tier; the
hand-built cases live in tests/unit/ctl/test_rebalance_plan.py.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from slotcache.ctl.rebalance_plan import (
    SLOT_COUNT,
    PlanError,
    PrimaryLoad,
    SlotStat,
    plan_rebalance,
    plan_reshard,
)
from tests.support.rebalance import after_counts, assert_sound


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[PrimaryLoad], dict[str, float], bool, float]:
    n = draw(st.integers(1, 8))
    empty = draw(st.integers(0, 3))
    cuts = sorted(draw(st.lists(st.integers(0, SLOT_COUNT), min_size=n - 1, max_size=n - 1)))
    bounds = [0, *cuts, SLOT_COUNT]
    owned = [list(range(bounds[i], bounds[i + 1])) for i in range(n)]
    rng = random.Random(draw(st.integers(0, 2**32)))
    if draw(st.booleans()):  # scatter slots rather than contiguous blocks
        everything = [s for block in owned for s in block]
        rng.shuffle(everything)
        sizes = [len(b) for b in owned]
        owned, at = [], 0
        for size in sizes:
            owned.append(everything[at : at + size])
            at += size
    primaries = [PrimaryLoad(f"n{i}", tuple(sorted(s))) for i, s in enumerate(owned)]
    primaries += [PrimaryLoad(f"e{i}", ()) for i in range(empty)]
    weights = {
        p.id: float(draw(st.integers(0, 4)))
        for p in primaries
        if draw(st.integers(0, 3)) == 0  # most primaries keep the default weight
    }
    use_empty = draw(st.booleans())
    threshold = draw(st.sampled_from([0.0, 1.0, 2.0, 5.0, 20.0]))
    return primaries, weights, use_empty, threshold


@settings(max_examples=300, deadline=None)
@given(clusters())
def test_rebalance_by_slots_properties(
    case: tuple[list[PrimaryLoad], dict[str, float], bool, float],
) -> None:
    primaries, weights, use_empty, threshold = case
    try:
        plan = plan_rebalance(
            primaries, weights=weights, use_empty=use_empty, threshold_pct=threshold
        )
    except PlanError as exc:
        assert "weight 0" in str(exc)
        return
    assert_sound(primaries, plan.moves)
    before = {p.id: len(p.slots) for p in primaries}
    after = after_counts(primaries, plan)
    # Conservation: all slots are still owned, each by one primary.
    assert sum(after.values()) == SLOT_COUNT
    # Minimal: no primary both gives and receives, so slots moved = the total surplus removed.
    givers = {m.source for m in plan.moves}
    takers = {m.target for m in plan.moves}
    assert not givers & takers
    assert plan.slots_moved == sum(max(0, before[n] - after[n]) for n in before)
    # One move per (source, target) pair.
    pairs = [(m.source, m.target) for m in plan.moves]
    assert len(pairs) == len(set(pairs))
    # Threshold: afterwards every primary is within it of its share (or within a slot).
    for node in plan.nodes:
        slack = max(node.expected * threshold / 100, 1.0)
        assert abs(node.slots_after - node.expected) <= slack + 1e-9, node
    # Nothing to do: nothing moves, and then everyone was already within the threshold.
    if not plan.moves:
        for node in plan.nodes:
            slack = max(node.expected * threshold / 100, 1.0)
            assert abs(node.slots_before - node.expected) <= slack + 1e-9
    # Empty primaries without use_empty are left alone.
    if not use_empty:
        for p in primaries:
            if not p.slots:
                assert after[p.id] == 0


@settings(max_examples=150, deadline=None)
@given(clusters(), st.integers(0, 2**32), st.sampled_from(["keys", "memory"]))
def test_rebalance_by_load_properties(
    case: tuple[list[PrimaryLoad], dict[str, float], bool, float], seed: int, unit: str
) -> None:
    primaries, weights, use_empty, threshold = case
    rng = random.Random(seed)
    stats = {
        s: SlotStat(k, k * 110)
        for s in range(SLOT_COUNT)
        if (k := rng.choice([0, 0, 1, 3, 10, 200])) > 0
    }
    try:
        plan = plan_rebalance(
            primaries,
            stats,
            unit=unit,  # type: ignore[arg-type]
            weights=weights,
            use_empty=use_empty,
            threshold_pct=threshold,
        )
    except PlanError:
        return
    assert_sound(primaries, plan.moves)
    for move in plan.moves:
        assert all(s in stats for s in move.slots), "a slot without keys moved"
    # Never worse than before.
    assert plan.imbalance_after_pct <= plan.imbalance_before_pct + 1e-9
    if not plan.moves:
        return
    # Moving one more slot between the pair of primaries furthest apart would not help much:
    # what remains is at most the biggest slot's load off from the share.
    biggest = max(s.keys for s in stats.values()) * (110 if unit == "memory" else 1)
    involved = [n for n in plan.nodes if n.slots_before != n.slots_after]
    for node in involved:
        if node.weight:
            assert abs(node.after - node.expected) <= max(
                abs(node.before - node.expected), biggest * len(plan.nodes)
            )


@settings(max_examples=200, deadline=None)
@given(clusters(), st.integers(1, SLOT_COUNT), st.booleans())
def test_reshard_properties(
    case: tuple[list[PrimaryLoad], dict[str, float], bool, float], count: int, from_all: bool
) -> None:
    primaries = case[0]
    target = primaries[-1].id
    sources = None if from_all else [primaries[0].id] if primaries[0].id != target else None
    try:
        moves = plan_reshard(primaries, target, sources, count)
    except PlanError as exc:
        assert "cannot move" in str(exc)
        return
    assert_sound(primaries, moves)
    assert sum(len(m.slots) for m in moves) == count
    assert all(m.target == target for m in moves)
    if from_all:
        sizes = {p.id: len(p.slots) for p in primaries if p.id != target}
        total = sum(sizes.values())
        for m in moves:
            assert abs(len(m.slots) - count * sizes[m.source] / total) <= 1
