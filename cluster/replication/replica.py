"""The replica's side of replication: follow the primary's stream and acknowledge it.

A replica applies what its primary sends and nothing else: it never expires
or evicts keys itself (it hides logically expired ones), so it stays an
exact copy. It keeps its own backlog of what it applied, with the primary's
offsets, so that after a failover the other replicas can continue from the
new primary without a full sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import grpc

from slotcache.contract import SLOT_COUNT

from ..keyspace import Keyspace
from ..peer_channels import open_peer_channel
from ..replication.backlog import Backlog
from ..replication.ops import EncodedOpRecorder
from ..replication.service import REPLICATE
from ..replication.snapshots import APPLY_SLICE_S, apply_ops, load_snapshots
from ..security.member_rpc import NotAMember, check_answer
from ..security.node_auth import NodeAuth
from ..wire import replication_pb2 as pb
from ..wire import replication_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

RETRY_MIN_S = 0.05
RETRY_MAX_S = 1.0


class ReplicaSync:
    """Keeps this node's keyspace a copy of its primary's."""

    def __init__(
        self,
        keyspace: Keyspace,
        backlog: Backlog,
        my_id: bytes,
        primary_bus: Callable[[], str | None],
        auth: NodeAuth | None = None,
        primary_id: Callable[[], bytes] = bytes,
    ) -> None:
        self.keyspace = keyspace
        self.backlog = backlog
        self.my_id = my_id
        self._primary_bus = primary_bus
        # Proves this node a member to the primary, and the primary one to this node.
        self._auth = auth or NodeAuth()
        self._primary_id = primary_id
        # Whether this node's data matches its backlog's history, so that it may
        # ask for a partial sync. True at first (an empty node's history is
        # empty, and a demoted primary's data is its own history); false while
        # a full sync has replaced part of the data.
        self.synced = True
        self.syncing = False
        self.applied = backlog.offset
        self.primary_offset = backlog.offset
        self.last_contact = 0.0
        # When this replica last knew it held everything its primary had.
        self.caught_up_at = 0.0
        self.full_syncs = 0
        self._pending_replid = ""
        self._recorder = EncodedOpRecorder(self._record)
        self._task: asyncio.Task[None] | None = None
        # Set once this replica is known to hold everything its primary has (a
        # heartbeat says so), once a full sync begins, or once an attempt to
        # follow the primary has failed: see NodeReplication.resync.
        self.resumed = asyncio.Event()

    def start(self) -> None:
        """Begin following the primary, reconnecting as needed."""
        self.keyspace.expire_keys = False
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="replica-sync")

    def halt(self) -> None:
        """Stop following at once: from now on nothing is applied or recorded.

        The task is cancelled before it can process another message; ``stop``
        waits for it to finish.
        """
        if self._task is not None:
            self._task.cancel()
        self.keyspace.remove_listener(self._recorder)

    async def stop(self) -> None:
        """Stop following (this node is being promoted or shut down)."""
        self.halt()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def retarget(self) -> None:
        """Follow the primary the membership names now, at once.

        Drops the stream from the old primary (which may hang: a stopped or
        cut-off node) and skips any reconnection delay.
        """
        if self._task is not None:
            self._task.cancel()
            self._task = asyncio.create_task(self._run(), name="replica-sync")

    @property
    def lag_ops(self) -> int:
        """Operations the primary has that this replica has not applied."""
        return max(0, self.primary_offset - self.applied)

    def link_age_ms(self) -> int:
        """Milliseconds since the primary was last heard from."""
        return int((time.monotonic() - self.last_contact) * 1000) if self.last_contact else 0

    def lag_ms(self) -> int:
        """Milliseconds since this replica was last known to be caught up with its primary.

        A replica caught up as of its primary's last message is behind by at
        most the time since then, so a silent link (a primary that is stopped
        or cut off) shows as growing lag, not as a fresh copy.
        """
        if not self.last_contact:
            return -1
        since = self.caught_up_at or self.last_contact
        return int((time.monotonic() - since) * 1000)

    def _note_caught_up(self) -> None:
        if self.applied >= self.primary_offset and not self.syncing:
            self.caught_up_at = self.last_contact

    async def _run(self) -> None:
        delay = RETRY_MIN_S
        while True:
            target = self._primary_bus()
            if target is not None:
                try:
                    await self._session(target)
                    delay = RETRY_MIN_S
                except grpc.aio.AioRpcError as exc:
                    log.info("replication from %s interrupted: %s", target, exc.code().name)
                except NotAMember as exc:
                    log.info("replication from %s refused: %s", target, exc)
                except Exception:
                    log.exception("replication from %s failed", target)
            self.resumed.set()
            self.syncing = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def _session(self, target: str) -> None:
        async with open_peer_channel(target, [("grpc.max_receive_message_length", -1)]) as channel:
            sent = self._auth.call_metadata(REPLICATE, audience=self._primary_id())
            call = pb_grpc.ReplicationStub(channel).Replicate(metadata=sent)
            hello = pb.ReplicaHello(replica=self.my_id)
            if self.synced:
                hello.replid, hello.offset = self.backlog.replid, self.backlog.offset
            self.syncing = False
            await call.write(pb.ReplicaMessage(hello=hello))
            await check_answer(self._auth, call, sent, REPLICATE, target)
            snapshotted: bytearray | None = None
            async for message in call:
                self.last_contact = time.monotonic()
                kind = message.WhichOneof("kind")
                if kind == "ops":
                    self._apply_ops(message.ops, snapshotted)
                    self._note_caught_up()
                    await call.write(pb.ReplicaMessage(ack=pb.ReplicaAck(offset=self.applied)))
                elif kind == "heartbeat":
                    self.primary_offset = max(self.primary_offset, message.heartbeat.offset)
                    self._note_caught_up()
                    if not self.syncing:
                        await call.write(pb.ReplicaMessage(ack=pb.ReplicaAck(offset=self.applied)))
                        if self.applied >= self.primary_offset:
                            self.resumed.set()
                elif kind == "snapshots":
                    assert snapshotted is not None, "snapshot outside a full sync"
                    await self._load(message.snapshots, snapshotted)
                elif kind == "partial":
                    self._continue(message.partial)
                elif kind == "full":
                    self.resumed.set()
                    snapshotted = await self._begin_full_sync(message.full)
                elif kind == "done":
                    self._finish_full_sync(message.done)
                    snapshotted = None
                    self._note_caught_up()
                    await call.write(pb.ReplicaMessage(ack=pb.ReplicaAck(offset=self.applied)))

    def _continue(self, partial: pb.PartialSync) -> None:
        """Partial sync: same data, maybe under the primary's new history id."""
        self.backlog.replid = partial.replid
        self.backlog.previous = None
        self.applied = partial.offset
        self.keyspace.add_listener(self._recorder)
        log.info("partial sync from offset %d", partial.offset)

    async def _begin_full_sync(self, start: pb.FullSyncStart) -> bytearray:
        self.full_syncs += 1
        self.syncing = True
        self.synced = False
        self.keyspace.remove_listener(self._recorder)
        self.applied = start.offset
        self.primary_offset = start.offset
        self._pending_replid = start.replid
        log.info("full sync from offset %d: dropping local data", start.offset)
        keyspace = self.keyspace
        deadline = time.monotonic() + APPLY_SLICE_S
        for slot in list(keyspace.nonempty_slots()):
            keyspace.clear_slot(slot)
            if time.monotonic() >= deadline:
                await asyncio.sleep(0)
                deadline = time.monotonic() + APPLY_SLICE_S
        return bytearray(SLOT_COUNT)

    async def _load(self, chunk: pb.SlotSnapshots, snapshotted: bytearray) -> None:
        await load_snapshots(self.keyspace, chunk, snapshotted)

    def _finish_full_sync(self, done: pb.FullSyncDone) -> None:
        self.backlog.reset(self._pending_replid, done.offset)
        self.applied = done.offset
        self.syncing = False
        self.synced = True
        self.keyspace.add_listener(self._recorder)
        log.info("full sync done at offset %d (%d keys)", done.offset, self.keyspace.key_count)

    def _apply_ops(self, ops: pb.ReplOps, snapshotted: bytearray | None) -> None:
        offset = apply_ops(self.keyspace, ops, snapshotted)
        if snapshotted is None and self.backlog.offset != offset:
            log.warning("replication offsets diverged (%d != %d)", self.backlog.offset, offset)
        self.applied = offset
        self.primary_offset = max(self.primary_offset, offset)

    def _record(self, data: bytes) -> None:
        self.backlog.append_encoded(data)
