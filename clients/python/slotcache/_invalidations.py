"""The Subscribe streams that keep the near cache correct: one per node the client reads from.

The bookkeeping is in :mod:`slotcache._nearcache` (no I/O); here are only
the streams. Each one is opened when the client first reads from a node,
feeds every message to the near cache, and when it ends (the node stopped,
the connection broke, the node refused our id) tells the near cache, which
drops that node's entries and caches nothing from it until the next
stream's first message, and subscribes again after a backoff. It retries
for as long as the client lives: a node that is gone for good costs one
attempt every couple of seconds.

The blocking client reads each stream on a daemon thread
(:class:`ThreadSubscriber`), the asyncio client in a task
(:class:`AioSubscriber`); what both do with a message, with the end of a
stream, and how long they pause, is :class:`Subscriber`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import Callable
from typing import Any

import grpc

from slotcache._nearcache import NearCache
from slotcache.v1 import cache_pb2 as pb

__all__ = ["BACKOFF_MAX_S", "BACKOFF_MIN_S", "AioSubscriber", "Subscriber", "ThreadSubscriber"]

# The pause before subscribing again doubles per failed attempt between these
# bounds (with jitter, so the clients of a restarted node do not come back in
# step); a stream that delivered its first message resets it.
BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 2.0

#: Opens a Subscribe stream: ``open(request)`` returns the call (an iterator of messages).
OpenStream = Callable[[pb.SubscribeRequest], Any]


class Subscriber:
    """The subscription to one node: what to do with its messages and with its end."""

    def __init__(
        self, address: str, near: NearCache, open_stream: OpenStream, rng: random.Random
    ) -> None:
        self.address = address
        self.closed = False
        self._near = near
        self._open = open_stream
        self._request = near.config.subscribe_request()
        self._random = rng
        self._failures = 0
        self._call: Any = None

    def _received(self, message: pb.Invalidation) -> None:
        if message.seq == 1:
            self._failures = 0  # subscribed: the next loss starts the backoff afresh
        self._near.on_message(self.address, message)

    def _ended(self) -> float:
        """The stream is over: flush the node's entries; the seconds to wait before the next."""
        self._call = None
        if not self.closed:  # a closing client clears the whole near cache itself
            self._near.lost(self.address)
        self._failures += 1
        ceiling: float = min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2.0 ** min(self._failures - 1, 16))
        return ceiling * (0.5 + 0.5 * self._random.random())

    def restart(self) -> None:
        """End the current stream (the node refused its id); the loop subscribes again."""
        call = self._call
        if call is not None:
            call.cancel()


class ThreadSubscriber(Subscriber):
    """A node's Subscribe stream read by a daemon thread (for the blocking client)."""

    def __init__(
        self, address: str, near: NearCache, open_stream: OpenStream, rng: random.Random
    ) -> None:
        super().__init__(address, near, open_stream, rng)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"slotcache-subscribe-{address}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                call = self._open(self._request)
            except ValueError:  # the client closed its channels
                return
            self._call = call
            if self._stop.is_set():  # closed while we opened it
                call.cancel()
            try:
                for message in call:
                    self._received(message)
            except grpc.RpcError:
                pass
            except Exception:  # e.g. the channel closed under the iterator: treat as lost
                pass
            self._stop.wait(self._ended())

    def close(self) -> None:
        """End the stream and the thread (waits briefly for it)."""
        self.closed = True
        self._stop.set()
        self.restart()
        if self._thread is not threading.current_thread():
            self._thread.join(1.0)


class AioSubscriber(Subscriber):
    """A node's Subscribe stream read by a task (for the asyncio client)."""

    def __init__(
        self, address: str, near: NearCache, open_stream: OpenStream, rng: random.Random
    ) -> None:
        super().__init__(address, near, open_stream, rng)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self.closed:
            try:
                call = self._open(self._request)
            except (ValueError, grpc.aio.UsageError):  # the client closed its channels
                return
            self._call = call
            try:
                async for message in call:
                    self._received(message)
            except grpc.RpcError:
                pass
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self.closed or (task is not None and task.cancelling()):
                    raise
                # grpc.aio raises CancelledError when the call itself was cancelled
                # (restart()): the stream is over, not this task.
            except Exception:  # a message that cannot be read: give the stream up
                pass
            await asyncio.sleep(self._ended())

    async def close(self) -> None:
        """End the stream and the task."""
        self.closed = True
        self.restart()
        task = self._task
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
