"""A Subscribe stream read by a background thread, so tests can wait with timeouts.

Everything on the wire is the plain generated stub's; this only queues the
messages with their arrival time and checks the sequence numbers as they come.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable

import grpc

from slotcache.v1 import cache_pb2 as pb
from slotcache.v1 import cache_pb2_grpc

TRACK_KEY = "slotcache-track"
WAIT_S = 5.0


class StreamEnded(Exception):
    """The Subscribe stream ended; ``code`` says how."""

    def __init__(self, code: grpc.StatusCode | None) -> None:
        super().__init__(f"the Subscribe stream ended with {code}")
        self.code = code


class Subscription:
    """One Subscribe stream: its id, its tracked-read metadata, and its messages in order."""

    def __init__(
        self, stub: cache_pb2_grpc.CacheStub, request: pb.SubscribeRequest, read: bool = True
    ) -> None:
        self.call = stub.Subscribe(request)
        first = next(self.call)
        assert first.seq == 1, first
        assert first.subscription_id and first.node_id
        assert not first.keys and not first.slots and not first.flush
        self.id: str = first.subscription_id
        self.node_id: str = first.node_id
        self.metadata = ((TRACK_KEY, self.id),)
        self.last_seq = 1
        self.received: list[pb.Invalidation] = []
        self._queue: queue.Queue[tuple[float, pb.Invalidation] | StreamEnded] = queue.Queue()
        self._thread: threading.Thread | None = None
        if read:
            self.start_reading()

    def start_reading(self) -> None:
        """Read the stream in the background from now on."""
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for message in self.call:
                self._queue.put((time.monotonic(), message))
        except grpc.RpcError:
            pass
        self._queue.put(StreamEnded(self.call.code()))

    def next(self, timeout: float = WAIT_S) -> pb.Invalidation:
        """The next message, checking that it is numbered right after the previous one."""
        return self.next_timed(timeout)[1]

    def next_timed(self, timeout: float = WAIT_S) -> tuple[float, pb.Invalidation]:
        """The next message and the time it arrived (time.monotonic())."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no invalidation within {timeout}s") from None
        if isinstance(item, StreamEnded):
            raise item
        at, message = item
        assert message.seq == self.last_seq + 1, f"gap: {self.last_seq} then {message.seq}"
        self.last_seq = message.seq
        self.received.append(message)
        return at, message

    def keys_until(self, wanted: Iterable[bytes], timeout: float = WAIT_S) -> list[bytes]:
        """Every invalidated key, in order, until all of ``wanted`` were seen."""
        missing = set(wanted)
        seen: list[bytes] = []
        deadline = time.monotonic() + timeout
        while missing:
            message = self.next(max(0.0, deadline - time.monotonic()))
            seen.extend(message.keys)
            missing -= set(message.keys)
        return seen

    def quiet(self, duration: float = 0.3) -> None:
        """Nothing arrives for ``duration`` seconds."""
        try:
            item = self._queue.get(timeout=duration)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected: {item}")

    def ended(self, timeout: float = WAIT_S) -> grpc.StatusCode | None:
        """Wait for the stream to end; return its status code."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"the stream did not end within {timeout}s") from None
            if isinstance(item, StreamEnded):
                return item.code

    def cancel(self) -> None:
        self.call.cancel()


class Pipeline:
    """One Pipeline stream on a plain stub, opened with the given metadata."""

    def __init__(
        self,
        stub: cache_pb2_grpc.CacheStub,
        metadata: tuple[tuple[str, str], ...] = (),
        timeout: float = 30.0,
    ) -> None:
        self._requests: queue.Queue[pb.PipelineRequest | None] = queue.Queue()
        self.call = stub.Pipeline(
            iter(self._requests.get, None), timeout=timeout, metadata=metadata
        )

    def send(self, *ops: pb.Operation) -> list[pb.OperationResult]:
        """Send one batch and return its results."""
        self._requests.put(pb.PipelineRequest(ops=ops))
        return list(next(self.call).results)

    def close(self) -> None:
        """Half-close and wait for the stream to end."""
        self._requests.put(None)
        assert list(self.call) == []
