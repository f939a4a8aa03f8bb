"""The Subscribe stream: broadcast by slot, batching, gap-free numbering, overflow, latency."""

from __future__ import annotations

import time

from slotcache.v1 import admin_pb2
from slotcache.v1 import cache_pb2 as pb
from tests.support.nodes import RPC_TIMEOUT, key_in_slot, percentile, slot_of, wait_for


def mset(node, keys: list[bytes], value: bytes = b"v") -> None:
    reply = node.cache.MSet(
        pb.MSetRequest(entries=[pb.SetRequest(key=k, value=value) for k in keys]),
        timeout=RPC_TIMEOUT,
    )
    assert all(reply.applied)


def test_broadcast_pushes_every_change_in_the_watched_slots(node, subscribe, keys):
    watched, other = 1000, 2000
    sub = subscribe(node.cache, pb.TRACKING_MODE_BROADCAST, [(watched, watched)])
    everything = subscribe(node.cache, pb.TRACKING_MODE_BROADCAST)
    a, b = key_in_slot(keys(""), watched, "a"), key_in_slot(keys(""), watched, "b")
    elsewhere = key_in_slot(keys(""), other, "c")
    node.set(a, b"1")  # never read: broadcast needs no read
    node.set(elsewhere, b"1")
    node.cache.Delete(pb.DeleteRequest(key=a), timeout=RPC_TIMEOUT)
    node.set(b, b"1")
    assert sub.keys_until([b]) in ([a, b], [a, a, b])  # a's two changes may share a message
    sub.quiet()
    seen = everything.keys_until([a, elsewhere, b])
    assert set(seen) == {a, elsewhere, b}


def test_one_mset_of_1000_keys_is_one_message(node, subscribe, keys, report_figure):
    sub = subscribe(node.cache)
    written = [keys(f"k{i}") for i in range(1000)]
    reply = node.cache.MGet(
        pb.MGetRequest(keys=written), timeout=RPC_TIMEOUT, metadata=sub.metadata
    )
    assert len(reply.results) == 1000
    mset(node, written)
    message = sub.next()
    assert message.seq == 2
    assert sorted(message.keys) == sorted(written)
    sub.quiet()
    broadcast = subscribe(node.cache, pb.TRACKING_MODE_BROADCAST)
    mset(node, written, b"w")
    message = broadcast.next()
    assert message.seq == 2 and len(message.keys) == 1000
    report_figure("batching: an MSet of 1000 tracked keys -> 1 Invalidation message of 1000 keys")


def test_sequence_numbers_have_no_gaps_under_a_stream_of_writes(node, subscribe, keys):
    sub = subscribe(node.cache, pb.TRACKING_MODE_BROADCAST)
    written = [keys(f"k{i}") for i in range(300)]
    for key in written:
        node.set(key, b"v")
    seen = sub.keys_until(written)  # next() asserts seq = previous + 1 for each message
    assert sorted(set(seen)) == sorted(written)
    assert [m.seq for m in sub.received] == list(range(2, 2 + len(sub.received)))


def test_a_slow_subscriber_gets_one_flush_instead_of_unbounded_queueing(
    servers, open_stubs, subscribe, keys, report_figure
):
    server = servers.start("--tracking-queue-max-keys", "1000")
    node = open_stubs(server.address)
    sub = subscribe(node.cache, pb.TRACKING_MODE_BROADCAST, read=False)
    # Far more than HTTP/2 flow control lets the server hand to a client that is
    # not reading (a few MiB), so the node's own queue must fill and overflow.
    big = b"x" * 2000
    for batch in range(30):
        mset(node, [keys(f"{batch}-{i}-").ljust(2000, b"-") for i in range(500)], big)
    stats = node.admin.Info(admin_pb2.InfoRequest(), timeout=RPC_TIMEOUT).stats
    assert stats["tracking.overflows"] >= 1
    sub.start_reading()
    # What was waiting when the queue overflowed left first, then one flush that
    # replaced the rest (and covers anything written while it was waiting).
    before_flush = 0
    while not (message := sub.next()).flush:  # next() checks seq stays gap-free
        before_flush += 1
    assert message.flush_reason == pb.FLUSH_REASON_OVERFLOW
    assert not message.keys and not message.slots
    # Then normal service on the same stream, numbering continued.
    last = keys("last")
    node.set(last, b"v")
    assert sub.keys_until([last]) == [last]
    assert sub.received[-1].seq == message.seq + 1
    report_figure(
        f"overflow: 15000 invalidations of 2 KB keys to a stalled subscriber -> "
        f"{before_flush} messages, 1 flush, then normal service"
    )


def test_a_flush_resets_the_registrations_made_before_it(servers, open_stubs, subscribe, keys):
    server = servers.start("--tracking-queue-max-keys", "1000")
    node = open_stubs(server.address)
    sub = subscribe(node.cache, read=False)
    written = [keys(f"w{i}-").ljust(2000, b"-") for i in range(15_000)]
    untouched = [keys(f"u{i}") for i in range(10)]
    for start in range(0, len(written), 1000):
        chunk = written[start : start + 1000]
        node.cache.MGet(pb.MGetRequest(keys=chunk), timeout=RPC_TIMEOUT, metadata=sub.metadata)
    node.cache.MGet(pb.MGetRequest(keys=untouched), timeout=RPC_TIMEOUT, metadata=sub.metadata)
    for start in range(0, len(written), 1000):
        mset(node, written[start : start + 1000])
    sub.start_reading()
    while not sub.next().flush:
        pass

    def tracked() -> int:
        return node.admin.Info(admin_pb2.InfoRequest(), timeout=RPC_TIMEOUT).stats["tracking.keys"]

    # The untouched keys were read before the flush: no longer tracked, and released.
    wait_for(lambda: tracked() == 0, 5, "the reset registrations to be released")
    sentinel = keys("sentinel")
    node.get(sentinel, sub.metadata)
    mset(node, [*untouched, sentinel])
    assert list(sub.next().keys) == [sentinel]


def test_invalidation_latency(server, node, open_stubs, subscribe, keys, report_figure):
    """From a write's reply to its invalidation's arrival, on one host."""
    sub = subscribe(node.cache)
    writer = open_stubs(server.address)
    samples = []
    for i in range(200):
        key = keys(f"k{i}")
        node.get(key, sub.metadata)
        writer.set(key, b"v")
        replied = time.monotonic()
        arrived, message = sub.next_timed()
        assert list(message.keys) == [key]
        samples.append((arrived - replied) * 1000)
    p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
    assert p99 < 50
    report_figure(
        f"invalidation latency after the write's reply (200 writes): p50 {p50:.2f} ms, "
        f"p99 {p99:.2f} ms (negative: the invalidation beat the reply)"
    )


def test_tracked_reads_of_one_slot_and_broadcast_slot_are_consistent(node, subscribe, keys):
    """A key's slot as the test computes it is the slot the broadcast filter uses."""
    key = keys("x")
    slot = slot_of(key)
    sub = subscribe(node.cache, pb.TRACKING_MODE_BROADCAST, [(slot, slot)])
    node.set(key, b"v")
    assert list(sub.next().keys) == [key]
