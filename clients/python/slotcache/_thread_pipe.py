"""One node's Pipeline stream for the blocking client: the I/O around a :class:`NodeBatcher`.

Callers in any thread queue an operation and block on a :class:`Waiter`.
gRPC's own request-consuming thread pulls messages from :meth:`_requests`,
which cuts a message from whatever is queued as soon as a message slot is
free; a reader thread matches replies to waiters. While one message is
being served, operations from every other thread pile up and leave
together in the next one: threads get auto-pipelining without any delay
being added when a single thread works alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from slotcache._pipeline import NodeBatcher, PendingOp
from slotcache.errors import Cancelled, SlotcacheError, Unavailable, from_rpc_error
from slotcache.v1 import cache_pb2 as pb

_CLOSED = "the call was cancelled: the client was closed"


class Waiter:
    """A one-shot slot a caller blocks on until the reader thread fills it."""

    __slots__ = ("_lock", "outcome")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.outcome: Any = None

    def set(self, outcome: Any) -> None:
        """Fill the slot and wake the caller (once: the batcher hands each op out once)."""
        self.outcome = outcome
        self._lock.release()

    def wait(self, timeout: float | None) -> bool:
        """Block until filled or ``timeout`` passes; True if filled."""
        return self._lock.acquire(timeout=-1 if timeout is None else timeout)


class ThreadPipe:
    """The Pipeline stream to one node, shared by every thread using one Client."""

    def __init__(
        self,
        batcher: NodeBatcher,
        open_stream: Callable[[Iterator[pb.PipelineRequest]], Any],
        name: str,
    ) -> None:
        self._batcher = batcher
        self._open = open_stream
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._call: Any = None
        self._generation = 0  # bumped whenever a stream is given up, to end its threads
        self._reader: threading.Thread | None = None
        self._closed = False

    def submit_many(self, items: list[tuple[str, Any]]) -> list[tuple[Waiter, PendingOp | None]]:
        """Queue operations (``(rpc, request)``) together, so they leave in one message."""
        out: list[tuple[Waiter, PendingOp | None]] = []
        with self._cond:
            if self._closed or (self._call is None and not self._try_start()):
                for _ in items:
                    waiter = Waiter()
                    waiter.set(Cancelled(_CLOSED))
                    out.append((waiter, None))
                return out
            add = self._batcher.add
            for rpc, request in items:
                waiter = Waiter()
                out.append((waiter, add(rpc, request, waiter)))
            self._cond.notify()
        return out

    def _try_start(self) -> bool:
        try:
            self._start()
        except ValueError:  # the channel was closed under us
            return False
        return True

    def wait(self, waiter: Waiter, op: PendingOp | None, timeout: float | None) -> Any:
        """The outcome of a submitted operation, or Timeout once ``timeout`` has passed."""
        if waiter.wait(timeout) or op is None:
            return waiter.outcome
        with self._cond:
            if waiter.wait(0):  # filled while we took the lock
                return waiter.outcome
            return self._batcher.expired(op, timeout or 0.0)

    def _start(self) -> None:
        """Open a stream; called with the lock held."""
        generation = self._generation
        call = self._open(self._requests(generation))
        self._call = call
        reader = threading.Thread(
            target=self._read,
            args=(call, generation),
            name=f"slotcache-pipeline-{self._name}",
            daemon=True,
        )
        self._reader = reader
        reader.start()

    def _requests(self, generation: int) -> Iterator[pb.PipelineRequest]:
        """The request stream gRPC pulls from: a message whenever one may be sent."""
        cond, batcher = self._cond, self._batcher
        while True:
            with cond:
                while generation == self._generation and not batcher.sendable():
                    cond.wait()
                if generation != self._generation:
                    return
                message, ops = batcher.take()
                for op in ops:
                    op.sent = True
            yield message

    def _read(self, call: Any, generation: int) -> None:
        cond, batcher = self._cond, self._batcher
        error: SlotcacheError = Unavailable("the node ended the Pipeline stream")
        try:
            for reply in call:
                with cond:
                    outcomes = batcher.on_reply(reply)
                    if batcher.sendable():
                        cond.notify()
                for op, outcome in outcomes:
                    op.waiter.set(outcome)
        except grpc.RpcError as exc:
            error = from_rpc_error(exc)
        except Exception as exc:  # e.g. the channel closed under the iterator
            error = Unavailable(f"the Pipeline stream failed: {exc}")
        self._broken(generation, error)

    def _broken(self, generation: int, error: SlotcacheError) -> None:
        """Give the stream up and settle what it owed; the next operation opens a new one."""
        with self._cond:
            if generation != self._generation:
                return
            self._generation += 1
            call, self._call = self._call, None
            outcomes = self._batcher.fail(error)
            self._cond.notify_all()
        if call is not None:
            call.cancel()
        for op, outcome in outcomes:
            op.waiter.set(outcome)

    def close(self) -> None:
        """Fail every outstanding operation with Cancelled, end the stream, join its reader."""
        with self._cond:
            self._closed = True
            self._generation += 1
            call, self._call = self._call, None
            outcomes = self._batcher.fail(Cancelled(_CLOSED))
            self._cond.notify_all()
        if call is not None:
            call.cancel()
        for op, outcome in outcomes:
            op.waiter.set(outcome)
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(5.0)
