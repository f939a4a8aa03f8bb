"""One node's Pipeline stream on asyncio: the I/O around a :class:`NodeBatcher`.

Operations issued while the event loop runs one turn are queued; a flush
scheduled with ``loop.call_soon`` runs after every callback already ready,
i.e. once the tasks woken in this turn have all queued theirs, and sends
them as one message. When the batcher says enough is queued, a message is
cut at once instead (unless an explicit pipeline is being queued, which
must leave whole). Replies resolve futures by operation id. The stream is
opened on first use and again after it breaks; a writer task and a reader
task live as long as the stream does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any

import grpc

from slotcache._pipeline import NodeBatcher, PendingOp
from slotcache.errors import Cancelled, SlotcacheError, Unavailable, from_rpc_error
from slotcache.v1 import cache_pb2 as pb

_NEVER = float("inf")


class Holds:
    """Explicit pipelines being queued: while any is, no message is cut early (shared by pipes)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class AioPipe:
    """The Pipeline stream to one node, shared by every task of one AsyncClient."""

    def __init__(
        self,
        batcher: NodeBatcher,
        open_stream: Callable[[], grpc.aio.StreamStreamCall[pb.PipelineRequest, pb.PipelineReply]],
        holds: Holds | None = None,
    ) -> None:
        self._batcher = batcher
        self._open = open_stream
        self._holds = holds or Holds()
        self._call: grpc.aio.StreamStreamCall[pb.PipelineRequest, pb.PipelineReply] | None = None
        self._outbox: deque[tuple[pb.PipelineRequest, list[PendingOp]]] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._flush_scheduled = False
        self._closed = False
        # One timer per stream, not one per operation: it fires at the nearest
        # deadline, times out what is overdue, and re-arms for the next.
        self._watchdog: asyncio.TimerHandle | None = None
        self._watch_at = _NEVER

    async def call(self, rpc: str, request: Any, timeout: float | None) -> Any:
        """Send one operation with the next message and wait for its outcome (never raises it)."""
        if self._closed:
            return Cancelled("the call was cancelled: the client was closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        deadline = _NEVER if timeout is None else loop.time() + timeout
        op = self._batcher.add(rpc, request, future, deadline)
        if deadline < self._watch_at:
            self._arm(loop, deadline)
        if not self._holds.count and self._batcher.should_send_now():
            self._send_ready()
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        try:
            return await future
        except asyncio.CancelledError:
            self._batcher.discard(op)
            raise

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._watchdog = loop.call_at(at, self._on_watchdog)
        self._watch_at = at

    def _on_watchdog(self) -> None:
        self._watchdog = None
        self._watch_at = _NEVER
        loop = asyncio.get_running_loop()
        self._settle(self._batcher.overdue(loop.time()))
        earliest = self._batcher.earliest_deadline()
        if earliest < _NEVER and not self._closed:
            self._arm(loop, earliest)

    def _flush(self) -> None:
        """The end of the turn: send what the tasks of this turn queued."""
        self._flush_scheduled = False
        self._send_ready()

    def _send_ready(self) -> None:
        """Cut every message that may be sent now and make sure a writer is sending them."""
        batcher = self._batcher
        if self._closed or not batcher.sendable():
            return
        if self._call is None:
            try:
                self._start()
            except (ValueError, grpc.aio.UsageError):  # the channel was closed under us
                self._settle(
                    batcher.fail(Cancelled("the call was cancelled: the client was closed"))
                )
                return
        while batcher.sendable():
            self._outbox.append(batcher.take())
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())

    def _start(self) -> None:
        call = self._call = self._open()
        self._reader = asyncio.get_running_loop().create_task(self._read(call))

    async def _write(self) -> None:
        outbox = self._outbox
        call = None
        try:
            while outbox and self._call is not None:
                call = self._call
                message, ops = outbox.popleft()
                for op in ops:
                    op.sent = True
                await call.write(message)
        except grpc.RpcError as exc:
            self._broken(call, from_rpc_error(exc))
        except (grpc.aio.UsageError, asyncio.InvalidStateError) as exc:
            self._broken(call, Unavailable(f"the Pipeline stream could not be written: {exc}"))

    async def _read(self, call: Any) -> None:
        batcher = self._batcher
        error: SlotcacheError
        try:
            while True:
                reply = await call.read()
                if reply is grpc.aio.EOF:
                    error = Unavailable("the node ended the Pipeline stream")
                    break
                self._settle(batcher.on_reply(reply))
                if batcher.sendable() and not self._flush_scheduled:
                    # After the tasks this reply woke up: what they issue joins the message.
                    self._flush_scheduled = True
                    asyncio.get_running_loop().call_soon(self._flush)
        except grpc.RpcError as exc:
            error = from_rpc_error(exc)
        except asyncio.CancelledError:
            if self._closed:
                return
            error = Cancelled("the Pipeline stream was cancelled")
        except Exception as exc:  # a reply that cannot be read: give the stream up
            error = Unavailable(f"the Pipeline stream failed: {exc!r}")
        self._broken(call, error)

    def _broken(self, call: Any, error: SlotcacheError) -> None:
        """Settle everything outstanding on a failed stream; the next operation opens a new one."""
        stream = self._call
        if stream is None or call is not stream:
            return  # already handled (both the reader and the writer saw it)
        self._call = None
        self._outbox.clear()
        stream.cancel()
        self._settle(self._batcher.fail(error))

    @staticmethod
    def _settle(outcomes: list[tuple[PendingOp, Any]]) -> None:
        for op, outcome in outcomes:
            future: asyncio.Future[Any] = op.waiter
            if not future.done():
                future.set_result(outcome)

    async def close(self) -> None:
        """Fail every outstanding operation with Cancelled and end the stream and its tasks."""
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        call, self._call = self._call, None
        self._outbox.clear()
        self._settle(self._batcher.fail(Cancelled("the call was cancelled: the client was closed")))
        for task in (self._writer, self._reader):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if call is not None:
            call.cancel()
            # Let gRPC finish the call's status handling before the loop may stop.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(call.code(), 1.0)
