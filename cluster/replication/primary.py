"""The primary's side of replication: one outgoing stream per replica, and write acknowledgements.

Every keyspace change becomes an operation in the backlog and, once per
event-loop turn, one message per connected replica. A replica that
reconnects within the backlog gets only what it missed; otherwise it gets
every slot as a snapshot, one slot per step of the loop, while new writes
keep streaming behind the snapshots.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from slotcache.contract import SLOT_COUNT

from ..keyspace import Keyspace
from ..replication.backlog import Backlog
from ..replication.ops import EncodedOpRecorder
from ..replication.snapshots import send_snapshots
from ..wire import replication_pb2 as pb

log = logging.getLogger(__name__)

# The snapshot producer waits while a replica has this many messages queued.
MAX_QUEUED_MESSAGES = 64


class ReplicationTimeout(Exception):
    """Fewer replicas than required acknowledged a write in time; it is applied here."""

    def __init__(self, acked: int, required: int) -> None:
        super().__init__(f"only {acked} of {required} replicas acknowledged the write in time")
        self.acked = acked
        self.required = required


@dataclass(eq=False)
class ReplicaLink:
    """One connected replica."""

    replica_id: bytes
    queue: asyncio.Queue[pb.PrimaryMessage] = field(default_factory=asyncio.Queue)
    pending: list[pb.ReplOp] = field(default_factory=list)
    pending_offset: int = 0
    # Every operation before this offset is applied on the replica.
    acked: int = 0
    # Still receiving its full sync: its acknowledgements do not count yet.
    syncing: bool = True
    last_ack: float = 0.0
    # Where its full sync left it: it lacks nothing before this offset.
    synced_to: int = 0

    def behind(self, start: int) -> bool:
        """Whether it lacks operations from before ``start`` (those the backlog dropped)."""
        return not self.syncing and max(self.acked, self.synced_to) < start

    def flush(self) -> None:
        """Queue the operations gathered since the last flush as one message."""
        if self.pending:
            ops = pb.ReplOps(offset=self.pending_offset, ops=self.pending)
            self.queue.put_nowait(pb.PrimaryMessage(ops=ops))
            self.pending = []


@dataclass
class _Waiter:
    offset: int
    needed: int
    future: asyncio.Future[int]


class PrimaryReplication:
    """Feeds every replica of this node and tracks what each has applied."""

    def __init__(self, keyspace: Keyspace, backlog: Backlog) -> None:
        self.keyspace = keyspace
        self.backlog = backlog
        self.links: dict[bytes, ReplicaLink] = {}
        self._waiters: list[_Waiter] = []
        # Writes waiting for enough replicas to be in sync (see wait_in_sync).
        self._sync_waiters: list[asyncio.Future[None]] = []
        self._flush_scheduled = False
        self.full_syncs = 0
        self.partial_syncs = 0
        self._recorder = EncodedOpRecorder(self._record)

    def attach(self) -> None:
        """Start recording every keyspace change."""
        self.keyspace.add_listener(self._recorder)

    def detach(self) -> None:
        """Stop recording (this node became a replica) and drop every replica."""
        self.keyspace.remove_listener(self._recorder)
        self._fail_waiters()  # with what each replica acknowledged so far
        for link in self.links.values():
            link.queue.put_nowait(pb.PrimaryMessage())  # an empty message ends the stream
        self.links.clear()

    # ---- the write path -------------------------------------------------------

    def _record(self, data: bytes) -> None:
        offset = self.backlog.append_encoded(data)
        if not self.links:
            return
        op = pb.ReplOp.FromString(data)
        for link in self.links.values():
            if not link.pending:
                link.pending_offset = offset
            link.pending.append(op)
        if self.links and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        start = self.backlog.start
        for link in list(self.links.values()):
            link.flush()
            if link.behind(start):
                self._drop(link)

    def _drop(self, link: ReplicaLink) -> None:
        """Stop feeding a replica that is further behind than the backlog reaches.

        A replica cut off by the network does not close its stream: nothing
        arrives and nothing fails, so without a limit every write would wait
        in its queue, without bound. Once it lacks operations the backlog no
        longer holds, it needs a full sync whatever happens (as a Redis replica
        whose output buffer overflows), so its queue is dropped now; the stream
        ends when the connection moves again, and the replica reconnects.
        """
        del self.links[link.replica_id]
        link.pending = []
        while not link.queue.empty():
            link.queue.get_nowait()
        link.queue.put_nowait(pb.PrimaryMessage())
        log.warning(
            "replica %s is further behind than the backlog holds; dropped its stream",
            link.replica_id.hex(),
        )

    @property
    def offset(self) -> int:
        """The offset the next write will get."""
        return self.backlog.offset

    def in_sync_replicas(self) -> int:
        """Replicas connected and past their full sync."""
        return sum(1 for link in self.links.values() if not link.syncing)

    async def wait_in_sync(self, needed: int, timeout: float) -> bool:
        """Wait until ``needed`` replicas are in sync; False if ``timeout`` passes first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.in_sync_replicas() < needed:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            future: asyncio.Future[None] = loop.create_future()
            self._sync_waiters.append(future)
            try:
                await asyncio.wait_for(future, remaining)
            except TimeoutError:
                return False
            finally:
                if future in self._sync_waiters:
                    self._sync_waiters.remove(future)
        return True

    def in_sync_changed(self) -> None:
        """Wake the writes waiting for replicas: one came in sync (or was added in sync)."""
        waiters, self._sync_waiters = self._sync_waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)

    def acked_count(self, offset: int) -> int:
        """How many in-sync replicas hold every operation before ``offset``."""
        return sum(1 for link in self.links.values() if not link.syncing and link.acked >= offset)

    async def wait_for(self, offset: int, needed: int, timeout: float) -> int:
        """Wait until ``needed`` replicas hold everything before ``offset``; raise on timeout."""
        acked = self.acked_count(offset)
        if acked >= needed:
            return acked
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(offset, needed, future)
        self._waiters.append(waiter)
        try:
            acked = await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise ReplicationTimeout(self.acked_count(offset), needed) from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        if acked < needed:
            # This node stopped being a primary first: the write may not survive.
            raise ReplicationTimeout(acked, needed)
        return acked

    def _ack(self, link: ReplicaLink, offset: int) -> None:
        link.acked = max(link.acked, offset)
        link.last_ack = time.monotonic()
        for waiter in list(self._waiters):
            if not waiter.future.done():
                acked = self.acked_count(waiter.offset)
                if acked >= waiter.needed:
                    waiter.future.set_result(acked)

    def _fail_waiters(self) -> None:
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_result(self.acked_count(waiter.offset))

    def heartbeat(self, now_ms: int) -> None:
        """Tell idle replicas we are alive and where the stream stands."""
        beat = pb.PrimaryMessage(heartbeat=pb.Heartbeat(offset=self.offset, primary_time_ms=now_ms))
        for link in self.links.values():
            if link.queue.empty() and not link.pending:
                link.queue.put_nowait(beat)

    # ---- serving one replica -----------------------------------------------------

    async def serve(
        self, requests: AsyncIterator[pb.ReplicaMessage]
    ) -> AsyncIterator[pb.PrimaryMessage]:
        """The Replicate stream for one replica: sync it, then keep it fed."""
        first = await anext(requests, None)
        if first is None or not first.HasField("hello"):
            return  # not a replica: one says hello first
        hello = first.hello
        replica_id = bytes(hello.replica)
        old = self.links.pop(replica_id, None)
        if old is not None:
            old.queue.put_nowait(pb.PrimaryMessage())
        link = ReplicaLink(replica_id)
        backlog = self.backlog
        snapshot_task: asyncio.Task[None] | None = None
        if hello.replid and backlog.can_continue(hello.replid, hello.offset):
            self.partial_syncs += 1
            link.syncing = False
            link.acked = hello.offset
            partial = pb.PartialSync(replid=backlog.replid, offset=hello.offset)
            link.queue.put_nowait(pb.PrimaryMessage(partial=partial))
            missed = backlog.since(hello.offset)
            if missed:
                ops = pb.ReplOps(offset=hello.offset, ops=missed)
                link.queue.put_nowait(pb.PrimaryMessage(ops=ops))
            log.info("replica %s continues from offset %d", replica_id.hex(), hello.offset)
        else:
            self.full_syncs += 1
            start = pb.FullSyncStart(replid=backlog.replid, offset=backlog.offset)
            link.queue.put_nowait(pb.PrimaryMessage(full=start))
            snapshot_task = asyncio.create_task(self._send_snapshots(link))
            log.info("replica %s needs a full sync from offset %d", replica_id.hex(), start.offset)
        self.links[replica_id] = link
        if not link.syncing:
            self.in_sync_changed()
        acks = asyncio.create_task(self._read_acks(link, requests))
        try:
            while True:
                message = await link.queue.get()
                if not message.WhichOneof("kind"):
                    return  # replaced, or this node stopped being a primary
                yield message
        finally:
            acks.cancel()
            if snapshot_task is not None:
                snapshot_task.cancel()
            if self.links.get(replica_id) is link:
                del self.links[replica_id]

    async def _read_acks(
        self, link: ReplicaLink, requests: AsyncIterator[pb.ReplicaMessage]
    ) -> None:
        async for message in requests:
            if message.HasField("ack") and not link.syncing:
                self._ack(link, message.ack.offset)
        link.queue.put_nowait(pb.PrimaryMessage())  # the replica went away

    async def _send_snapshots(self, link: ReplicaLink) -> None:
        """Every slot, each copied atomically, queued in order with the live operations."""

        def emit(chunk: pb.SlotSnapshots) -> None:
            # Operations gathered before these copies go first, in this same step.
            link.flush()
            link.queue.put_nowait(pb.PrimaryMessage(snapshots=chunk))

        await send_snapshots(
            self.keyspace,
            range(SLOT_COUNT),
            emit,
            lambda: link.queue.qsize() > MAX_QUEUED_MESSAGES,
        )
        link.flush()
        link.queue.put_nowait(pb.PrimaryMessage(done=pb.FullSyncDone(offset=self.backlog.offset)))
        # Its acknowledgements count from now on; they will be at least the done offset.
        link.synced_to = self.backlog.offset
        link.syncing = False
        self.in_sync_changed()
        log.info("full sync of replica %s sent", link.replica_id.hex())
