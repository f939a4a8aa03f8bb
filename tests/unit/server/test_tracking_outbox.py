"""A subscriber's outbox: batching, gap-free sequence numbers, splitting, and the bound."""

from __future__ import annotations

import pytest

from slotcache_server.tracking.outbox import Batch, Outbox


def test_changes_between_two_takes_leave_as_one_numbered_message():
    box = Outbox(limit=100)
    assert box.next_seq() == 1  # the stream's first message
    assert box.take() is None
    assert box.add_key(b"a") is True  # was empty: wake the stream
    assert box.add_key(b"b") is False
    assert box.add_key(b"a") is False  # already pending: sent once
    assert box.take() == Batch(2, [b"a", b"b"], [], False)
    assert box.take() is None
    box.add_slots([7, 3, 7])
    box.add_key(b"c")
    assert box.take() == Batch(3, [b"c"], [3, 7], False)


def test_large_batches_are_split_by_count_and_bytes_without_gaps():
    box = Outbox(limit=10_000)
    keys = [f"key{i:04}".encode() for i in range(1000)]
    for key in keys:
        box.add_key(key)
    batches = []
    while (batch := box.take(max_keys=300, max_bytes=10**9)) is not None:
        batches.append(batch)
    assert [b.seq for b in batches] == [1, 2, 3, 4]
    assert [len(b.keys) for b in batches] == [300, 300, 300, 100]
    assert [k for b in batches for k in b.keys] == keys
    for key in keys[:10]:
        box.add_key(key)
    batch = box.take(max_keys=100, max_bytes=3 * len(keys[0]))
    assert batch is not None and batch.keys == keys[:3]


def test_one_oversized_key_still_leaves():
    box = Outbox(limit=10)
    box.add_key(b"x" * 100)
    batch = box.take(max_keys=10, max_bytes=10)
    assert batch is not None and batch.keys == [b"x" * 100]


def test_overflow_replaces_what_is_pending_by_one_flush():
    box = Outbox(limit=3)
    box.next_seq()
    for key in (b"a", b"b", b"c"):
        box.add_key(key)
    assert box.add_key(b"d") is False  # the stream is already awake
    assert box.overflows == 1
    # While the flush waits, more changes are covered by it.
    box.add_key(b"e")
    box.add_slots([1])
    assert box.overflows == 1
    assert box.take() == Batch(2, [], [], True)
    assert box.take() is None
    box.add_key(b"f")
    assert box.take() == Batch(3, [b"f"], [], False)


def test_slots_count_against_the_bound():
    box = Outbox(limit=4)
    box.add_key(b"a")
    box.add_slots([1, 2, 3, 4])
    assert box.overflows == 1 and box.flush_pending


def test_the_bound_must_be_positive():
    with pytest.raises(ValueError):
        Outbox(0)
