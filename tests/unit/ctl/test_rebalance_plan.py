"""The reshard and rebalance planner on hand-built clusters: every verdict asserted exactly.

The same planner meets hundreds of generated clusters in
tests/heavy/test_rebalance_properties.py.
"""

from __future__ import annotations

import random

import pytest

from slotcache.contract import split_slots, to_ranges
from slotcache.ctl.rebalance_plan import (
    SLOT_COUNT,
    Move,
    PlanError,
    PrimaryLoad,
    SlotStat,
    batches,
    deviation_pct,
    plan_rebalance,
    plan_reshard,
)
from tests.support.rebalance import after_counts, assert_sound


def even(n: int, empty: int = 0) -> list[PrimaryLoad]:
    """``n`` primaries splitting the slots evenly (as create does), then ``empty`` without slots."""
    out = [
        PrimaryLoad(f"n{i}", tuple(range(start, end + 1)))
        for i, (start, end) in enumerate(split_slots(n))
    ]
    return out + [PrimaryLoad(f"e{i}", ()) for i in range(empty)]


def split(counts: list[int]) -> list[PrimaryLoad]:
    """Primaries owning contiguous blocks of the given sizes (the sizes add up to 16384)."""
    assert sum(counts) == SLOT_COUNT
    out, start = [], 0
    for i, c in enumerate(counts):
        out.append(PrimaryLoad(f"n{i}", tuple(range(start, start + c))))
        start += c
    return out


# ---- slots ------------------------------------------------------------------------------


def test_an_empty_primary_gets_its_quarter_with_use_empty() -> None:
    primaries = even(3, empty=1)
    plan = plan_rebalance(primaries, use_empty=True)
    assert after_counts(primaries, plan) == {"n0": 4096, "n1": 4096, "n2": 4096, "e0": 4096}
    assert plan.slots_moved == 4096  # exactly what the new node needs, nothing more
    assert {m.target for m in plan.moves} == {"e0"}
    assert plan.imbalance_before_pct == pytest.approx(100.0)
    assert plan.imbalance_after_pct < 0.1
    assert_sound(primaries, plan.moves)


def test_empty_primaries_are_left_alone_without_use_empty() -> None:
    primaries = even(3, empty=1)
    plan = plan_rebalance(primaries)
    assert plan.moves == ()
    assert "within 2%" in plan.reason
    # ...and weighing one of them explicitly does not change that (redis-cli's rule).
    plan = plan_rebalance(primaries, weights={"e0": 5})
    assert plan.moves == ()


def test_nothing_moves_when_everyone_is_within_the_threshold() -> None:
    primaries = split([5500, 5500, 5384])  # +0.7%, +0.7%, -1.4%
    plan = plan_rebalance(primaries)
    assert plan.moves == () and plan.reason
    # A stricter threshold does move.
    plan = plan_rebalance(primaries, threshold_pct=1.0)
    assert plan.moves
    assert_sound(primaries, plan.moves)


def test_primaries_within_the_threshold_keep_their_slots() -> None:
    primaries = split([5500, 5600, 5284])  # +0.7%, +2.5%, -3.2%
    plan = plan_rebalance(primaries)
    counts = after_counts(primaries, plan)
    assert counts["n0"] == 5500, "n0 is within 2% and must be left alone"
    assert counts["n1"] == counts["n2"] == (5600 + 5284) // 2
    assert plan.slots_moved == 5600 - 5442
    assert [(m.source, m.target) for m in plan.moves] == [("n1", "n2")]


def test_helpers_join_when_the_outsiders_cannot_balance_alone() -> None:
    # Nine primaries slightly over, one far under: levelling the one alone does nothing.
    counts = [1650] * 9 + [SLOT_COUNT - 9 * 1650]
    primaries = split(counts)
    plan = plan_rebalance(primaries)
    after = after_counts(primaries, plan)
    expected = SLOT_COUNT / 10
    for node, count in after.items():
        assert abs(count - expected) <= max(0.02 * expected, 1), (node, count)
    assert_sound(primaries, plan.moves)


def test_weights_share_the_slots_in_proportion() -> None:
    primaries = even(3)
    plan = plan_rebalance(primaries, weights={"n0": 2})
    after = after_counts(primaries, plan)
    assert after == {"n0": 8192, "n1": 4096, "n2": 4096}
    assert_sound(primaries, plan.moves)


def test_weight_zero_drains_a_primary() -> None:
    primaries = even(4)
    plan = plan_rebalance(primaries, weights={"n3": 0})
    after = after_counts(primaries, plan)
    assert after["n3"] == 0
    assert sorted(after.values())[1:] == [5461, 5461, 5462]
    assert all(m.source == "n3" for m in plan.moves)
    assert_sound(primaries, plan.moves)


def test_every_weight_zero_is_refused() -> None:
    with pytest.raises(PlanError, match="weight 0"):
        plan_rebalance(even(2), weights={"n0": 0, "n1": 0})
    with pytest.raises(PlanError, match="no primary has the id"):
        plan_rebalance(even(2), weights={"zz": 1})
    with pytest.raises(PlanError, match="finite number"):
        plan_rebalance(even(2), weights={"n0": -1})


def test_sources_give_their_lowest_slots_first() -> None:
    primaries = even(1, empty=1)
    plan = plan_rebalance(primaries, use_empty=True)
    (move,) = plan.moves
    assert move.slots == tuple(range(8192))


def test_a_slot_owned_twice_is_refused() -> None:
    with pytest.raises(PlanError, match="owned by both"):
        plan_rebalance([PrimaryLoad("a", (1, 2)), PrimaryLoad("b", (2, 3))])


# ---- keys and memory -------------------------------------------------------------------


def skewed_stats(seed: int, hot: range) -> dict[int, SlotStat]:
    """A few keys per slot, many in the ``hot`` slots, a few slots empty."""
    rng = random.Random(seed)
    stats = {}
    for slot in range(SLOT_COUNT):
        keys = rng.randint(0, 20) * (25 if slot in hot else 1)
        if keys:
            stats[slot] = SlotStat(keys, keys * rng.randint(100, 140))
    return stats


@pytest.mark.parametrize("unit", ["keys", "memory"])
def test_rebalance_by_load_evens_out_skewed_slots(unit: str) -> None:
    primaries = even(3)
    stats = skewed_stats(1, range(0, 800))  # node 0 holds many more keys
    plan = plan_rebalance(primaries, stats, unit=unit)  # type: ignore[arg-type]
    assert_sound(primaries, plan.moves)
    assert plan.imbalance_before_pct > 50
    assert plan.imbalance_after_pct < 1.0
    # Only slots that hold keys moved, and the reported keys/bytes are what they hold.
    for move in plan.moves:
        assert all(s in stats for s in move.slots)
        assert move.keys == sum(stats[s].keys for s in move.slots)
        assert move.bytes == sum(stats[s].bytes for s in move.slots)
    # Heavy slots first: far fewer slots move than by slot count.
    assert plan.slots_moved < 800
    # The keys table adds up.
    assert sum(n.keys_after for n in plan.nodes) == sum(s.keys for s in stats.values())


def test_rebalance_by_keys_into_an_empty_primary() -> None:
    primaries = even(3, empty=1)
    stats = skewed_stats(2, range(0))
    plan = plan_rebalance(primaries, stats, unit="keys", use_empty=True)
    total = sum(s.keys for s in stats.values())
    for node in plan.nodes:
        assert abs(node.keys_after - total / 4) <= 0.02 * total / 4
    assert {m.target for m in plan.moves} == {"e0"}


def test_rebalance_by_keys_without_keys_does_nothing() -> None:
    plan = plan_rebalance(even(3, empty=1), {}, unit="keys", use_empty=True)
    assert plan.moves == () and plan.reason == "no keys"


# ---- reshard and batches ---------------------------------------------------------------


def test_reshard_from_one_source() -> None:
    primaries = even(3, empty=1)
    (move,) = plan_reshard(primaries, "e0", ["n1"], 100)
    assert move.source == "n1" and move.target == "e0"
    assert move.slots == tuple(range(5462, 5562))


def test_reshard_from_all_is_proportional() -> None:
    primaries = [*split([8192, 4096, 4096]), PrimaryLoad("e0", ())]
    moves = plan_reshard(primaries, "e0", None, 1000)
    assert {m.source: len(m.slots) for m in moves} == {"n0": 500, "n1": 250, "n2": 250}
    assert_sound(primaries, moves)


def test_reshard_refusals() -> None:
    primaries = even(2)
    with pytest.raises(PlanError, match="cannot move 9000"):
        plan_reshard(primaries, "n1", ["n0"], 9000)
    with pytest.raises(PlanError, match="cannot also be a source"):
        plan_reshard(primaries, "n1", ["n1"], 1)
    with pytest.raises(PlanError, match="not a primary"):
        plan_reshard(primaries, "zz", None, 1)


def test_batches_split_in_slot_order() -> None:
    move = Move("a", "b", tuple(range(10, 1010)))
    parts = batches(move, 256, {10: SlotStat(3, 300)})
    assert [len(p.slots) for p in parts] == [256, 256, 256, 232]
    assert parts[0].slots[0] == 10 and parts[0].keys == 3 and parts[0].bytes == 300
    assert [s for p in parts for s in p.slots] == list(move.slots)


def test_batches_also_stop_at_a_number_of_keys() -> None:
    stats = {s: SlotStat(10, 1000) for s in range(100)}
    stats[50] = SlotStat(500, 50_000)  # a hot slot goes alone
    parts = batches(Move("a", "b", tuple(range(100))), 256, stats, max_keys=100)
    assert [len(p.slots) for p in parts] == [10, 10, 10, 10, 10, 1, 10, 10, 10, 10, 9]
    assert parts[5].slots == (50,) and parts[5].keys == 500
    assert all(p.keys <= 100 for i, p in enumerate(parts) if i != 5)
    assert [s for p in parts for s in p.slots] == list(range(100))
    with pytest.raises(PlanError):
        batches(Move("a", "b", (1,)), 0)


def test_to_ranges_and_deviation() -> None:
    assert to_ranges([5, 1, 2, 3, 7]) == [(1, 3), (5, 5), (7, 7)]
    assert deviation_pct(110, 100) == pytest.approx(10)
    assert deviation_pct(5, 0) == 100 and deviation_pct(0, 0) == 0
