"""The client algorithm of docs/near-cache-protocol.md, raced against writers on a real server.

The near cache here is the documented algorithm and nothing more (placeholder
before the read, invalidations void placeholders and drop entries), written
against the plain generated stub. Readers and writers hammer a few hot keys;
once the writers stop and the stream has caught up, every cached value must
equal the server's. A server that registered a read after its reply, or
lost an invalidation, leaves a stale entry behind and fails this test.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field

import grpc

from slotcache.v1 import cache_pb2 as pb
from slotcache.v1 import cache_pb2_grpc
from tests.support.nodes import RPC_TIMEOUT

RUN_S = 3.0


@dataclass(eq=False)  # each read's own: compared by identity
class Placeholder:
    void: bool = False


@dataclass
class NearCache:
    """One node's near cache over a keys-mode subscription."""

    stub: cache_pb2_grpc.CacheStub
    metadata: tuple[tuple[str, str], ...] = ()
    cache: dict[bytes, bytes | None] = field(default_factory=dict)
    pending: dict[bytes, list[Placeholder]] = field(default_factory=dict)
    lock: threading.Condition = field(default_factory=threading.Condition)
    last_seq: int = 0
    hits: int = 0
    voided: int = 0
    invalidated: int = 0

    def apply(self, message: pb.Invalidation) -> None:
        with self.lock:
            assert message.seq == self.last_seq + 1
            self.last_seq = message.seq
            if message.flush:
                self.cache.clear()
                for placeholders in self.pending.values():
                    for p in placeholders:
                        p.void = True
            for key in message.keys:
                self.invalidated += 1
                self.cache.pop(key, None)
                for p in self.pending.get(key, ()):
                    self.voided += not p.void
                    p.void = True
            self.lock.notify_all()

    def get(self, key: bytes) -> bytes | None:
        with self.lock:
            if key in self.cache:
                self.hits += 1
                return self.cache[key]
            placeholder = Placeholder()
            self.pending.setdefault(key, []).append(placeholder)
        reply = self.stub.Get(pb.GetRequest(key=key), timeout=RPC_TIMEOUT, metadata=self.metadata)
        value = reply.value if reply.found else None
        with self.lock:
            self.pending[key].remove(placeholder)
            if not self.pending[key]:
                del self.pending[key]
            if not placeholder.void:
                self.cache[key] = value
        return value


def test_no_stale_entry_survives_racing_writes(
    server, node, open_stubs, subscribe, keys, report_figure
):
    sub = subscribe(node.cache, read=False)
    near = NearCache(node.cache, sub.metadata, last_seq=1)

    def follow() -> None:
        with contextlib.suppress(grpc.RpcError):  # cancelled at the end of the test
            for message in sub.call:
                near.apply(message)

    threading.Thread(target=follow, daemon=True).start()
    hot = [keys(f"hot{i}") for i in range(5)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def guarded(work) -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    def writer(n: int) -> None:
        stubs = open_stubs(server.address)
        version = 0
        while not stop.is_set():
            version += 1
            for key in hot:
                stubs.set(key, f"{n}:{version}".encode())

    def reader() -> None:
        while not stop.is_set():
            for key in hot:
                near.get(key)

    threads = [threading.Thread(target=guarded, args=(lambda n=n: writer(n),)) for n in range(2)]
    threads += [threading.Thread(target=guarded, args=(reader,)) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(RUN_S)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert not errors, errors

    # Quiesce: the sentinel's invalidation comes after every earlier write's.
    sentinel = keys("sentinel")
    near.get(sentinel)
    node.set(sentinel, b"x")
    with near.lock:
        assert near.lock.wait_for(lambda: sentinel not in near.cache, timeout=5)
        cached = dict(near.cache)
    stale = {}
    for key, value in cached.items():
        current = node.get(key)
        if value != current:
            stale[key] = (value, current)
    assert not stale, f"stale near-cache entries: {stale}"
    assert near.invalidated > 0 and near.hits > 0
    report_figure(
        f"race: {RUN_S:.0f}s of 2 writers x 2 cached readers on 5 hot keys: "
        f"{near.hits} near-cache hits, {near.invalidated} invalidations, "
        f"{near.voided} placeholders voided, 0 stale entries"
    )
