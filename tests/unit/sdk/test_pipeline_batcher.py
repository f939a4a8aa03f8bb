"""Auto-pipelining without a network: how one node's operations are batched and settled."""

from __future__ import annotations

import grpc
import pytest

import slotcache
from slotcache._pipeline import NodeBatcher
from slotcache._retry import never_sent, retryable
from slotcache._stats import ClientStats
from slotcache.errors import error_for
from slotcache.v1 import cache_pb2 as pb

REFUSED = "failed to connect to all addresses; last error: UNKNOWN: Connection refused"
RESET = "Socket closed"


def get(key: bytes) -> pb.GetRequest:
    return pb.GetRequest(key=key)


def reply_for(message: pb.PipelineRequest, *, fail: set[int] = frozenset()) -> pb.PipelineReply:
    """What a node answers: every Get found with its key reversed; ids in ``fail`` MOVED."""
    reply = pb.PipelineReply()
    for op in message.ops:
        result = reply.results.add(id=op.id)
        if op.id in fail:
            result.error.code = grpc.StatusCode.FAILED_PRECONDITION.value[0]
            result.error.message = "MOVED 7 10.0.0.2:7000"
            result.error.reason = "MOVED"
            result.error.metadata["slot"] = "7"
            result.error.metadata["address"] = "10.0.0.2:7000"
        else:
            result.get.found = True
            result.get.value = op.get.key[::-1]
    return reply


def test_operations_queued_together_leave_in_one_message_in_order() -> None:
    stats = ClientStats()
    batcher = NodeBatcher("a:1", stats)
    ops = [batcher.add("Get", get(b"k%d" % i), f"waiter{i}") for i in range(100)]
    assert batcher.sendable()
    message, taken = batcher.take()
    assert taken == ops
    assert [op.get.key for op in message.ops] == [b"k%d" % i for i in range(100)]
    assert len({op.id for op in message.ops}) == 100
    assert (stats.pipeline_messages, stats.pipeline_ops) == (1, 100)
    assert not batcher.sendable()

    outcomes = batcher.on_reply(reply_for(message))
    assert [(op.waiter, out.value) for op, out in outcomes] == [
        (f"waiter{i}", (b"k%d" % i)[::-1]) for i in range(100)
    ]
    assert batcher.idle


def test_at_most_max_in_flight_messages_and_the_rest_waits() -> None:
    batcher = NodeBatcher("a:1", max_in_flight=1)
    batcher.add("Get", get(b"a"), 1)
    first, _ = batcher.take()
    for key in (b"b", b"c", b"d"):
        batcher.add("Get", get(key), key)
    assert not batcher.sendable()  # a message is being served: the others pile up
    batcher.on_reply(reply_for(first))
    second, taken = batcher.take()
    assert [op.get.key for op in second.ops] == [b"b", b"c", b"d"]
    assert len(taken) == 3

    two = NodeBatcher("a:1", max_in_flight=2)
    two.add("Get", get(b"a"), 1)
    two.take()
    two.add("Get", get(b"b"), 2)
    assert two.sendable()


def test_messages_are_cut_by_count_and_by_size() -> None:
    batcher = NodeBatcher("a:1", max_in_flight=10, max_ops=3)
    for i in range(7):
        batcher.add("Get", get(b"%d" % i), i)
    sizes = []
    while batcher.sendable():
        sizes.append(len(batcher.take()[0].ops))
    assert sizes == [3, 3, 1]

    big = NodeBatcher("a:1", max_in_flight=10, max_bytes=1000)
    for i in range(3):
        big.add("Set", pb.SetRequest(key=b"%d" % i, value=b"x" * 600), i)
    big.add("Set", pb.SetRequest(key=b"huge", value=b"x" * 5000), "huge")
    sizes = []
    while big.sendable():
        sizes.append(len(big.take()[0].ops))
    assert sizes == [1, 1, 1, 1]  # an operation larger than the budget still goes, alone


def test_every_kind_of_operation_is_encoded_in_its_field() -> None:
    batcher = NodeBatcher("a:1")
    requests = {
        "Get": pb.GetRequest(key=b"k"),
        "Set": pb.SetRequest(key=b"k", value=b"v", ttl_ms=5),
        "Delete": pb.DeleteRequest(key=b"k"),
        "Exists": pb.ExistsRequest(key=b"k"),
        "Expire": pb.ExpireRequest(key=b"k", clear=True),
        "Ttl": pb.TtlRequest(key=b"k"),
        "Incr": pb.IncrRequest(key=b"k", delta=3),
        "MGet": pb.MGetRequest(keys=[b"a", b"b"]),
        "MSet": pb.MSetRequest(entries=[pb.SetRequest(key=b"a", value=b"1")]),
        "MDelete": pb.MDeleteRequest(keys=[b"a"]),
    }
    for rpc, request in requests.items():
        batcher.add(rpc, request, rpc)
    message, _ = batcher.take()
    for op, (rpc, request) in zip(message.ops, requests.items(), strict=True):
        field = op.WhichOneof("op")
        assert field == rpc.lower()
        assert getattr(op, field) == request


def test_a_failed_operation_gets_its_typed_error_and_the_others_their_replies() -> None:
    batcher = NodeBatcher("a:1")
    ops = [batcher.add("Get", get(b"k%d" % i), i) for i in range(3)]
    message, _ = batcher.take()
    outcomes = dict(batcher.on_reply(reply_for(message, fail={ops[1].id})))
    assert outcomes[ops[0]].value == b"0k"
    moved = outcomes[ops[1]]
    assert isinstance(moved, slotcache.Moved)
    assert moved.slot == 7 and moved.address == "10.0.0.2:7000"
    assert outcomes[ops[2]].value == b"2k"


def test_replies_for_forgotten_operations_are_dropped() -> None:
    batcher = NodeBatcher("a:1")
    kept = batcher.add("Get", get(b"a"), "kept")
    gone = batcher.add("Get", get(b"b"), "gone")
    message, _ = batcher.take()
    assert batcher.discard(gone) is False  # it was in a message already
    assert [op for op, _ in batcher.on_reply(reply_for(message))] == [kept]


def test_an_expired_operation_still_queued_is_never_sent() -> None:
    batcher = NodeBatcher("a:1")
    batcher.add("Get", get(b"a"), 1)
    batcher.take()
    late = batcher.add("Get", get(b"late"), 2)  # waits for the message slot
    error = batcher.expired(late, 0.5)
    assert isinstance(error, slotcache.Timeout)
    assert "before the operation was sent" in error.message
    assert not batcher.sendable()  # nothing left to send


def test_an_expired_operation_in_flight_may_have_run() -> None:
    batcher = NodeBatcher("a:1")
    op = batcher.add("Incr", pb.IncrRequest(key=b"n"), 1)
    batcher.take()
    error = batcher.expired(op, 0.5)
    assert isinstance(error, slotcache.Timeout)
    assert "may or may not have been applied" in error.message


def test_a_broken_stream_tells_sent_operations_from_queued_ones() -> None:
    stats = ClientStats()
    batcher = NodeBatcher("a:1", stats)
    sent = batcher.add("Incr", pb.IncrRequest(key=b"n"), "sent")
    _, taken = batcher.take()
    for op in taken:
        op.sent = True  # the shell wrote the message
    taken_not_written = batcher.add("Incr", pb.IncrRequest(key=b"m"), "in outbox")
    batcher.max_in_flight = 2
    batcher.take()  # cut, but the stream broke before the shell wrote it
    queued = batcher.add("Incr", pb.IncrRequest(key=b"q"), "queued")

    outcomes = dict(batcher.fail(error_for(grpc.StatusCode.UNAVAILABLE, RESET)))
    assert batcher.idle
    assert stats.stream_failures == 1
    # Written: it may have run, so a non-idempotent command must not be resent.
    assert isinstance(outcomes[sent], slotcache.Unavailable)
    assert not never_sent(outcomes[sent])
    assert not retryable(outcomes[sent], idempotent=False)
    assert retryable(outcomes[sent], idempotent=True)
    assert "may or may not have been applied" in outcomes[sent].message
    # Never written: safe to resend anything.
    for op in (taken_not_written, queued):
        assert isinstance(outcomes[op], slotcache.NotSent)
        assert never_sent(outcomes[op])
        assert retryable(outcomes[op], idempotent=False)


def test_a_stream_that_never_connected_sent_nothing() -> None:
    batcher = NodeBatcher("a:1")
    op = batcher.add("Incr", pb.IncrRequest(key=b"n"), 1)
    _, taken = batcher.take()
    taken[0].sent = True
    (outcome,) = [o for _, o in batcher.fail(error_for(grpc.StatusCode.UNAVAILABLE, REFUSED))]
    assert never_sent(outcome)
    assert op.sent


def test_closing_cancels_everything() -> None:
    stats = ClientStats()
    batcher = NodeBatcher("a:1", stats)
    batcher.add("Get", get(b"a"), 1)
    batcher.take()
    batcher.add("Get", get(b"b"), 2)
    outcomes = batcher.fail(slotcache.Cancelled("closed"))
    assert [type(o) for _, o in outcomes] == [slotcache.Cancelled, slotcache.Cancelled]
    assert stats.stream_failures == 0  # closing is not a failure


def test_options_are_checked() -> None:
    with pytest.raises(ValueError):
        NodeBatcher("a:1", max_in_flight=0)
    with pytest.raises(ValueError):
        NodeBatcher("a:1", max_ops=0)


def test_a_message_may_be_cut_early_once_enough_is_queued() -> None:
    batcher = NodeBatcher("a:1", max_in_flight=2, early_ops=3, early_bytes=1000)
    batcher.add("Get", get(b"a"), 1)
    batcher.add("Get", get(b"b"), 2)
    assert batcher.sendable() and not batcher.should_send_now()
    batcher.add("Get", get(b"c"), 3)
    assert batcher.should_send_now()  # three queued: send without waiting for the turn's end
    batcher.take()
    batcher.add("Set", pb.SetRequest(key=b"big", value=b"x" * 2000), 4)
    assert batcher.should_send_now()  # by size
    batcher.take()
    for key in (b"d", b"e", b"f"):
        batcher.add("Get", get(key), key)
    assert not batcher.should_send_now()  # both message slots are taken
    plain = NodeBatcher("a:1", max_in_flight=2)
    for key in (b"d", b"e", b"f"):
        plain.add("Get", get(key), key)
    assert not plain.should_send_now()  # no early cut unless asked for
