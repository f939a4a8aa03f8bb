"""The shared wire contract: operation table against the protos, slot helpers."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slotcache.contract import (
    OPS,
    OPS_BY_RPC,
    SLOT_COUNT,
    ShortReply,
    key_slot,
    key_slots,
    split_slots,
    to_ranges,
)
from slotcache.v1 import cache_pb2 as pb


def test_every_pipeline_operation_is_in_the_table():
    fields = {f.name for f in pb.Operation.DESCRIPTOR.oneofs_by_name["op"].fields}
    assert set(OPS) == fields
    results = {f.name for f in pb.OperationResult.DESCRIPTOR.fields}
    assert set(OPS) <= results


def test_every_operation_names_a_unary_method_with_the_same_messages():
    service = pb.DESCRIPTOR.services_by_name["Cache"]
    for op in OPS.values():
        method = service.methods_by_name[op.rpc]
        field = pb.Operation.DESCRIPTOR.fields_by_name[op.field]
        assert method.input_type is field.message_type
        assert OPS_BY_RPC[op.rpc] is op


def test_writes_are_exactly_the_mutating_operations():
    assert {op.rpc for op in OPS.values() if op.writes} == {
        "Set",
        "Delete",
        "Expire",
        "Incr",
        "MSet",
        "MDelete",
    }
    assert {op.rpc for op in OPS.values() if op.multi} == {"MGet", "MSet", "MDelete"}


def test_split_and_merge_mget():
    request = pb.MGetRequest(keys=[b"k0", b"k1", b"k2", b"k3"])
    op = OPS_BY_RPC["MGet"]
    multi = op.multi
    assert op.keys(request) == [b"k0", b"k1", b"k2", b"k3"]
    assert list(multi.subset(request, [3, 1]).keys) == [b"k3", b"k1"]
    reply = multi.new_reply(4)
    multi.merge(
        reply, [1, 3], pb.MGetReply(results=[pb.GetReply(found=True, value=b"v1"), pb.GetReply()])
    )
    multi.merge(
        reply, [0, 2], pb.MGetReply(results=[pb.GetReply(), pb.GetReply(found=True, value=b"v2")])
    )
    assert [(r.found, r.value) for r in reply.results] == [
        (False, b""),
        (True, b"v1"),
        (True, b"v2"),
        (False, b""),
    ]
    with pytest.raises(ShortReply, match="came back with 1"):
        multi.merge(reply, [0, 2], pb.MGetReply(results=[pb.GetReply()]))


def test_split_and_merge_mset_and_mdelete():
    request = pb.MSetRequest(
        entries=[pb.SetRequest(key=k, value=k.upper(), ttl_ms=5) for k in (b"a", b"b", b"c")],
        min_replicas=1,
    )
    multi = OPS_BY_RPC["MSet"].multi
    part = multi.subset(request, [2, 0])
    assert [(e.key, e.value, e.ttl_ms) for e in part.entries] == [(b"c", b"C", 5), (b"a", b"A", 5)]
    assert part.min_replicas == 1  # each part asks for what the whole did
    reply = multi.new_reply(3)
    multi.merge(reply, [2, 0], pb.MSetReply(applied=[True, True]))
    assert list(reply.applied) == [True, False, True]

    multi = OPS_BY_RPC["MDelete"].multi
    reply = multi.new_reply(3)
    multi.merge(reply, [0], pb.MDeleteReply(deleted=1))
    multi.merge(reply, [1, 2], pb.MDeleteReply(deleted=2))
    assert reply.deleted == 3


@given(st.lists(st.binary(max_size=12), max_size=20))
def test_key_slots_agrees_with_key_slot(keys):
    assert key_slots(keys) == [key_slot(k) for k in keys]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 50, 1000, 16384])
def test_split_slots_covers_every_slot_evenly(n):
    ranges = split_slots(n)
    assert len(ranges) == n
    assert ranges[0][0] == 0
    assert ranges[-1][1] == SLOT_COUNT - 1
    assert to_ranges(s for start, end in ranges for s in range(start, end + 1)) == [
        (0, SLOT_COUNT - 1)
    ]
    sizes = [end - start + 1 for start, end in ranges]
    assert max(sizes) - min(sizes) <= 1


def test_split_slots_refuses_zero_nodes():
    with pytest.raises(ValueError, match="at least one"):
        split_slots(0)
