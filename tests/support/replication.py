"""A replication primary and replica in one process, over real gRPC on a loopback port.

Both ends of the sync protocol run on the test's event loop, so the stream
itself (full sync, live operations, partial resync, acks) and the role
switches built on it are tested without server processes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc

from slotcache.contract import SLOT_COUNT
from slotcache_server.keyspace import Keyspace
from slotcache_server.replication.backlog import Backlog
from slotcache_server.replication.primary import PrimaryReplication
from slotcache_server.replication.replica import ReplicaSync
from slotcache_server.replication.service import ReplicationService
from slotcache_server.wire import replication_pb2_grpc


def contents(ks: Keyspace) -> dict[bytes, tuple[bytes, int]]:
    out = {}
    for slot in range(SLOT_COUNT):
        for key, value, deadline in ks.slot_items(slot):
            out[key] = (value, deadline)
    return out


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` without blocking the loop both ends run on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


class Pair:
    """A primary serving on 127.0.0.1 and a replica of it, each with its own keyspace."""

    def __init__(self, primary_ks: Keyspace, backlog_bytes: int = 1 << 20) -> None:
        self.primary_ks = primary_ks
        self.primary = PrimaryReplication(primary_ks, Backlog(backlog_bytes))
        self.replica_ks = Keyspace()
        self.replica = ReplicaSync(
            self.replica_ks, Backlog(1 << 20), b"r" * 20, lambda: self.address
        )
        self.server: grpc.aio.Server | None = None
        self.address = ""

    async def start_primary(self) -> None:
        self.server = grpc.aio.server()
        replication_pb2_grpc.add_ReplicationServicer_to_server(
            ReplicationService(lambda: self.primary), self.server
        )
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{port}"
        await self.server.start()
        self.primary.attach()

    async def stop(self) -> None:
        await self.replica.stop()
        if self.server is not None:
            await self.server.stop(0)

    def in_sync(self) -> bool:
        return (
            not self.replica.syncing
            and self.replica.synced
            and self.replica.applied == self.primary.offset
            and contents(self.replica_ks) == contents(self.primary_ks)
        )
