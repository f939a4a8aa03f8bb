"""TtlIndex and SlotSet against plain dict/set models."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slotcache.contract import SLOT_COUNT
from slotcache_server.keyspace.slot_set import SlotSet
from slotcache_server.keyspace.ttl_index import TtlIndex


def _every_position(n):
    """A random() stand-in per position, so random_entry visits index 0..n-1."""
    return [lambda i=i: (i + 0.5) / n for i in range(n)]


def _ttl_index_contents(index):
    """Everything random_entry can return, read through the public interface only."""
    return dict(index.random_entry(r) for r in _every_position(len(index)))


def _check_ttl_index(index, model):
    assert len(index) == len(model)
    assert _ttl_index_contents(index) == model
    for key, deadline in model.items():
        assert key in index
        assert index.deadline(key) == deadline


_TTL_KEYS = st.sampled_from([b"a", b"b", b"c", b"d", b"e", b"f", b"g"])
_TTL_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), _TTL_KEYS, st.integers(1, 2**63 - 1)),
        st.tuples(st.just("discard"), _TTL_KEYS, st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=300)
@given(_TTL_OPS)
def test_ttl_index_matches_dict_model(ops):
    index = TtlIndex()
    model = {}
    for op, key, deadline in ops:
        if op == "set":
            index.set(key, deadline)
            model[key] = deadline
        else:
            assert index.discard(key) == (key in model)
            model.pop(key, None)
        _check_ttl_index(index, model)
    for key in [b"a", b"b", b"c", b"d", b"e", b"f", b"g"]:
        if key not in model:
            assert key not in index
            assert index.deadline(key) == 0
    index.clear()
    _check_ttl_index(index, {})


def test_ttl_index_random_entry_is_uniform_over_members():
    index = TtlIndex()
    for i in range(4):
        index.set(b"k%d" % i, 100 + i)
    index.discard(b"k1")  # swap-removal moves k3 into k1's place
    seen = [index.random_entry(lambda f=f: f)[0] for f in (0.0, 0.34, 0.67, 0.999)]
    assert sorted(set(seen)) == [b"k0", b"k2", b"k3"]
    assert index.random_entry(lambda: 0.999) == (b"k2", 102)


def test_ttl_index_rejects_out_of_range_deadline_without_corruption():
    index = TtlIndex()
    index.set(b"a", 5)
    with pytest.raises(OverflowError):
        index.set(b"b", 2**63)
    _check_ttl_index(index, {b"a": 5})
    index.set(b"b", 7)
    _check_ttl_index(index, {b"a": 5, b"b": 7})


def _slot_set_members(slots):
    return {slots.random_member(r) for r in _every_position(len(slots))}


_SLOTS = st.one_of(st.integers(0, 7), st.sampled_from([0, 1, 8191, SLOT_COUNT - 1]))


@settings(max_examples=300)
@given(st.lists(st.tuples(st.booleans(), _SLOTS), max_size=60))
def test_slot_set_matches_set_model(ops):
    slots = SlotSet()
    model = set()
    for add, slot in ops:
        if add:
            slots.add(slot)
            model.add(slot)
        else:
            slots.discard(slot)
            model.discard(slot)
        assert len(slots) == len(model)
        assert list(slots) == sorted(model)
        assert _slot_set_members(slots) == model
        for s in (0, 1, 2, 3, 4, 5, 6, 7, 8191, SLOT_COUNT - 1):
            assert (s in slots) == (s in model)
