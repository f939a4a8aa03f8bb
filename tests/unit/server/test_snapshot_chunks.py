"""A full sync or migration copies a bounded number of slots per event-loop step."""

from __future__ import annotations

import asyncio

from slotcache.contract import SLOT_COUNT, key_slot
from slotcache_server.keyspace import Keyspace
from slotcache_server.replication.snapshots import SNAPSHOT_CHUNK_SLOTS, send_snapshots
from slotcache_server.wire import replication_pb2 as pb


def test_a_sparse_keyspace_is_sent_in_bounded_chunks_with_every_slot_and_key():
    keyspace = Keyspace()
    keys = {b"k%d" % i for i in range(300)}
    for key in keys:
        keyspace.set(key, b"v")
    chunks: list[pb.SlotSnapshots] = []

    async def sync() -> None:
        await send_snapshots(keyspace, range(SLOT_COUNT), chunks.append, lambda: False)

    asyncio.run(sync())
    assert max(len(c.slots) for c in chunks) <= SNAPSHOT_CHUNK_SLOTS
    assert [s.slot for c in chunks for s in c.slots] == list(range(SLOT_COUNT))
    sent = {(e.key, s.slot) for c in chunks for s in c.slots for e in s.entries}
    assert sent == {(k, key_slot(k)) for k in keys}
