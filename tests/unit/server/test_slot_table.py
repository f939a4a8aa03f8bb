"""The slot table and the ranges encoding carried in every bus header."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slotcache.contract import SLOT_COUNT, to_ranges
from slotcache_server.membership.slot_table import SlotTable, expand, flatten

A, B, C = b"a" * 20, b"b" * 20, b"c" * 20


@pytest.mark.parametrize(
    ("slots", "ranges"),
    [
        ([], []),
        ([5], [(5, 5)]),
        ([3, 1, 2], [(1, 3)]),
        ([1, 1, 2, 2], [(1, 2)]),
        ([0, 2, 4], [(0, 0), (2, 2), (4, 4)]),
        ([10, 11, 12, 20, 21, 0], [(0, 0), (10, 12), (20, 21)]),
        (range(SLOT_COUNT), [(0, SLOT_COUNT - 1)]),
    ],
)
def test_to_ranges(slots, ranges):
    assert to_ranges(slots) == ranges


def test_flatten_and_expand():
    assert flatten([(0, 2), (7, 7)]) == [0, 2, 7, 7]
    assert flatten([]) == []
    assert list(expand([0, 2, 7, 7])) == [0, 1, 2, 7]
    assert list(expand([])) == []


@pytest.mark.parametrize(
    "flat",
    [[1], [1, 2, 3], [5, 4], [0, SLOT_COUNT], [SLOT_COUNT, SLOT_COUNT], [-1, 3]],
)
def test_expand_refuses_malformed_ranges(flat):
    with pytest.raises(ValueError):
        list(expand(flat))


@given(st.sets(st.integers(0, SLOT_COUNT - 1), max_size=300))
def test_ranges_round_trip(slots):
    ranges = to_ranges(slots)
    assert list(expand(flatten(ranges))) == sorted(slots)
    # Ranges are sorted, disjoint and not adjacent (maximal).
    for (_, end), (start, _) in itertools.pairwise(ranges):
        assert start > end + 1


def test_assign_owner_count_and_unassign():
    table = SlotTable()
    assert table.unassigned() == SLOT_COUNT
    assert table.owner(0) is None
    assert table.assign(0, A) is None
    assert table.assign(1, A) is None
    assert table.assign(1, B) == A
    assert table.assign(1, B) == B  # no change
    assert (table.owner(0), table.owner(1)) == (A, B)
    assert (table.count(A), table.count(B), table.count(C)) == (1, 1, 0)
    assert table.owners() == {A: 1, B: 1}
    assert table.unassigned() == SLOT_COUNT - 2
    assert table.assign(0, None) == A
    # A node left with no slots is no longer an owner at all.
    assert table.owners() == {B: 1}
    assert table.count(A) == 0
    assert table.slots_of(A) == []


def test_slots_of_is_sorted_and_snapshot_is_a_copy():
    table = SlotTable()
    for slot in (9, 3, 5):
        table.assign(slot, A)
    assert table.slots_of(A) == [3, 5, 9]
    snap = table.snapshot()
    assert len(snap) == SLOT_COUNT
    assert [i for i, owner in enumerate(snap) if owner == A] == [3, 5, 9]
    table.assign(3, B)
    assert snap[3] == A


def test_flat_ranges_are_cached_until_either_side_changes():
    table = SlotTable()
    for slot in range(10):
        table.assign(slot, A)
    first = table.flat_ranges(A)
    assert first == [0, 9]
    assert table.flat_ranges(A) is first  # cached: headers ask for it on every message
    assert table.flat_ranges(B) == []
    table.assign(5, A)  # not a change
    assert table.flat_ranges(A) is first
    table.assign(5, B)  # A loses a slot, B gains one: both caches go
    assert table.flat_ranges(A) == [0, 4, 6, 9]
    assert table.flat_ranges(B) == [5, 5]
    table.assign(5, None)
    assert table.flat_ranges(B) == []
    assert table.flat_ranges(A) == [0, 4, 6, 9]
    table.assign(5, A)
    assert table.flat_ranges(A) == [0, 9]


@settings(max_examples=60)
@given(
    st.lists(
        st.tuples(st.integers(0, 63), st.sampled_from([A, B, C, None])),
        max_size=200,
    )
)
def test_table_matches_a_plain_dict(assignments):
    """Every view stays consistent with a model through any sequence of assignments.

    Slots 0..63 only, so that the same slots are reassigned often; ranges are
    read between assignments so stale caches would show.
    """
    table = SlotTable()
    model: dict[int, bytes] = {}
    for slot, node in assignments:
        previous = table.assign(slot, node)
        assert previous == model.get(slot)
        if node is None:
            model.pop(slot, None)
        else:
            model[slot] = node
        for owner in (A, B, C):
            mine = sorted(s for s, o in model.items() if o == owner)
            assert table.flat_ranges(owner) == flatten(to_ranges(mine))
    for owner in (A, B, C):
        mine = sorted(s for s, o in model.items() if o == owner)
        assert table.slots_of(owner) == mine
        assert table.count(owner) == len(mine)
    assert table.owners() == {
        owner: n for owner in (A, B, C) if (n := sum(1 for o in model.values() if o == owner))
    }
    assert table.unassigned() == SLOT_COUNT - len(model)
    assert all(table.owner(slot) == model.get(slot) for slot in range(64))
