"""The asyncio client: performs the core's actions on ``grpc.aio`` channels, concurrently.

This module is the I/O shell only. Routing, retries, refresh decisions and
metrics live in :mod:`slotcache._core`, batching in
:mod:`slotcache._pipeline`, the stream itself in :mod:`slotcache._aio_pipe`.
Here the actions of one step run concurrently, sleeps are awaited, and a
refresh is one shared task that any number of callers can wait on.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import grpc

from slotcache._aio_pipe import AioPipe, Holds
from slotcache._base import ClientBase, now_ms
from slotcache._batch import Batch, finish
from slotcache._channels import ChannelPool, connector
from slotcache._commands import Command, Key
from slotcache._core import (
    Action,
    Call,
    Outcome,
    Plan,
    Refresh,
    Sleep,
    Trailed,
    call_metadata,
)
from slotcache._getorset import Verdict
from slotcache._invalidations import AioSubscriber
from slotcache._nearcache import NOT_CACHED
from slotcache._pipeline import ASYNC_MAX_IN_FLIGHT, EARLY_BYTES, EARLY_OPS, NodeBatcher
from slotcache._singleflight import AsyncFlights
from slotcache.errors import Cancelled, SlotcacheError, Timeout, from_rpc_error

T = TypeVar("T")

_CLOSED = "the call was cancelled: the client was closed"


def _consume(task: asyncio.Task[None]) -> None:
    """Mark a refresh's failure as seen; the core has counted it, and callers got it."""
    if not task.cancelled():
        task.exception()


class AsyncClient(ClientBase):
    """An asyncio slotcache client. Use it with ``async with``, or await :meth:`close`.

    Takes the same arguments as :class:`slotcache.Client`; see docs/client.md.
    Create and use it on one event loop. Calls made by tasks in the same
    turn of the loop travel to each node in one Pipeline message.
    """

    def _setup_io(self) -> None:
        self._pool: ChannelPool[grpc.aio.Channel] = ChannelPool(
            connector(grpc.aio.insecure_channel, grpc.aio.secure_channel, self._tls)
        )
        # By (address, redirect, near-cache subscription id): see Client._pipes.
        self._pipes: dict[tuple[str, bool, str | None], AioPipe] = {}
        self._subscribers: dict[str, AioSubscriber] = {}
        self._holds = Holds()
        self._refresh_task: asyncio.Task[None] | None = None
        self._flights = AsyncFlights(self._core.stats)
        self._random = random.Random()

    def _subscribe(self, address: str) -> None:
        near = self._near
        assert near is not None
        if self._closed or address in self._subscribers:
            return
        self._subscribers[address] = AioSubscriber(
            address, near, self._subscription_opener(address), self._random
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Fail outstanding operations with Cancelled, end every stream, close every channel."""
        self._closed = True
        task = self._refresh_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, SlotcacheError):
                await task
        subscribers = list(self._subscribers.values())
        self._subscribers.clear()
        await asyncio.gather(*(s.close() for s in subscribers))
        if self._near is not None:
            self._near.clear()
        pipes = list(self._pipes.values())
        self._pipes.clear()
        await asyncio.gather(*(pipe.close() for pipe in pipes))
        await asyncio.gather(*(c.close() for c in self._pool.take_all()))

    # ---- performing the core's actions ---------------------------------------

    async def _run(self, command: Command[T], timeout: float | None) -> T:
        if self._closed:
            raise ValueError("the client is closed")
        return await self._drive(self._core.plan(command, timeout))

    async def _drive(self, plan: Plan[T]) -> T:
        try:
            actions = next(plan)
            while True:
                self._maybe_refresh_in_background()
                if len(actions) == 1:
                    outcomes = [await self._perform(actions[0])]
                else:
                    outcomes = list(await asyncio.gather(*(self._perform(a) for a in actions)))
                actions = plan.send(outcomes)
        except StopIteration as done:
            self._maybe_refresh_in_background()
            result: T = done.value
            return result

    def _perform(self, action: Action) -> Awaitable[Outcome]:
        if isinstance(action, Call):
            if action.stream:
                return self._pipe(action.address, action.redirect, action.track).call(
                    action.rpc, action.request, action.timeout
                )
            return self._unary(action)
        if isinstance(action, Sleep):
            return asyncio.sleep(action.seconds)
        return self._refresh_now(action)

    def _pipe(self, address: str, redirect: bool, track: str | None) -> AioPipe:
        key = (address, redirect, track)
        pipe = self._pipes.get(key)
        if pipe is None:
            batcher = NodeBatcher(
                address,
                self._core.stats,
                max_in_flight=self._max_in_flight or ASYNC_MAX_IN_FLIGHT,
                early_ops=EARLY_OPS,
                early_bytes=EARLY_BYTES,
            )
            metadata = call_metadata(redirect, False, track, self._credentials)
            pool = self._pool

            def open_stream() -> Any:
                return pool.pipeline(address)(metadata=metadata)

            pipe = self._pipes[key] = AioPipe(batcher, open_stream, self._holds)
        return pipe

    async def _unary(self, call: Call) -> Outcome:
        metadata = call_metadata(call.redirect, call.replica, call.track, self._credentials)
        try:
            method = self._pool.method(call.address, call.rpc)
            rpc = method(call.request, timeout=call.timeout, metadata=metadata)
            reply = await rpc
            if call.replica:
                return Trailed(reply, dict(await rpc.trailing_metadata() or ()))
            return reply
        except grpc.RpcError as exc:
            return from_rpc_error(exc)
        except (ValueError, grpc.aio.UsageError):  # the pool or the channel was closed
            return Cancelled(_CLOSED)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our caller is being cancelled
            # grpc.aio raises CancelledError when the call itself was cancelled (the
            # channel closed under it); that is a failed call, as in Client, and must
            # not look like a cancellation of the caller's task.
            return Cancelled(_CLOSED)

    def _start_refresh(
        self, initial: bool, timeout: float | None, delay: float = 0.0
    ) -> asyncio.Task[None]:
        """The running refresh, or a new one: concurrent callers share one Topology round."""
        task = self._refresh_task
        if task is None or task.done():
            task = asyncio.create_task(self._refresh(initial, timeout, delay))
            task.add_done_callback(_consume)
            self._refresh_task = task
        return task

    async def _refresh(self, initial: bool, timeout: float | None, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        await self._drive(self._core.refresh_plan(initial, timeout))

    async def _refresh_now(self, action: Refresh) -> SlotcacheError | None:
        """Wait for the map refresh (starting one if none runs), within the action's timeout."""
        task = self._start_refresh(action.initial, action.timeout)
        try:
            # Shielded: a caller that gives up must not cancel a refresh others wait on.
            await asyncio.wait_for(asyncio.shield(task), action.timeout)
        except SlotcacheError as exc:
            return exc
        except TimeoutError:
            return Timeout("timed out waiting for a slot map refresh") if action.initial else None
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # our caller is being cancelled
            return Cancelled("the slot map refresh was cancelled: the client was closed")
        return None

    def _maybe_refresh_in_background(self) -> None:
        if self._closed:
            return
        delay = self._core.take_refresh_request()
        if delay is not None:
            self._start_refresh(False, None, delay)

    # ---- explicit pipelines and get_or_set -------------------------------------

    def pipeline(self, *, timeout: float | None = None) -> AsyncPipeline:
        """A batch of operations sent together: ``async with client.pipeline() as p: p.get(k)``.

        Same semantics as :meth:`slotcache.Client.pipeline`; ``execute`` is a coroutine.
        """
        self._check_open()
        return AsyncPipeline(self, timeout)

    async def _execute(self, commands: list[Command[Any]], timeout: float | None) -> list[Any]:
        self._check_open()
        plans = [self._core.plan(c, timeout) for c in commands]
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._drive(p)) for p in plans]
        # The tasks queue their first operations in the next turn; cut no message early
        # until they all have, so the batch leaves whole (one message per node).
        self._holds.count += 1
        loop.call_soon(self._release_hold)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, SlotcacheError):
                raise result
        return list(results)

    def _release_hold(self) -> None:
        self._holds.count -= 1

    async def get_or_set(
        self,
        key: Key,
        loader: Callable[[], Any],
        ttl_ms: int | None = None,
        *,
        beta: float = 0.0,
        ttl_jitter: float = 0.0,
        timeout: float | None = None,
    ) -> Any:
        """The cached value of ``key``; on a miss, ``loader()``'s result, cached for ``ttl_ms``.

        ``loader`` may be a plain function or return an awaitable. At most
        one task of this client runs it for a key at a time. See
        :meth:`slotcache.Client.get_or_set` for ``beta`` and ``ttl_jitter``.
        """
        flow = self._get_or_set(key, ttl_ms, beta, ttl_jitter)
        stored = await self._run(flow.read(self._commands), timeout)
        verdict, value = flow.judge(self._values, stored, now_ms(), self._random.random)
        if verdict is Verdict.FRESH:
            return value

        async def load() -> Any:
            flow.count_load(verdict, self._core.stats)
            started = now_ms()
            fresh = loader()
            if inspect.isawaitable(fresh):
                fresh = await fresh
            now = now_ms()
            write = flow.write(self._commands, fresh, now - started, now, self._random.random)
            await self._run(write, timeout)
            return fresh

        return await self._flights.run(flow.key, load, flow.stale(verdict, value))

    # ---- commands: see slotcache._commands for their semantics -------------

    async def get(
        self, key: Key, *, replica_ok: bool | None = None, timeout: float | None = None
    ) -> Any:
        """The value of ``key``, or None if it is missing (see :meth:`slotcache.Client.get`)."""
        near = self._near
        if near is not None:
            value = self._near_get(near, key)
            if value is not NOT_CACHED:
                return value
        return await self._run(self._commands.get(key, replica_ok), timeout)

    async def set(
        self,
        key: Key,
        value: Any,
        *,
        ttl_ms: int | None = None,
        if_absent: bool = False,
        if_present: bool = False,
        keep_ttl: bool = False,
        min_replicas: int | None = None,
        timeout: float | None = None,
    ) -> bool:
        """Write ``key``; False when a condition left it unwritten (see :meth:`Client.set`)."""
        command = self._commands.set(
            key, value, ttl_ms, if_absent, if_present, keep_ttl, min_replicas
        )
        return await self._run(command, timeout)

    async def delete(
        self, key: Key, *, min_replicas: int | None = None, timeout: float | None = None
    ) -> bool:
        """Remove ``key``; True if it existed."""
        return await self._run(self._commands.delete(key, min_replicas), timeout)

    async def exists(
        self, key: Key, *, replica_ok: bool | None = None, timeout: float | None = None
    ) -> bool:
        """Whether ``key`` is held."""
        return await self._run(self._commands.exists(key, replica_ok), timeout)

    async def expire(
        self,
        key: Key,
        ttl_ms: int | None,
        *,
        min_replicas: int | None = None,
        timeout: float | None = None,
    ) -> bool:
        """Set the TTL of ``key`` (None clears it); False if the key is missing."""
        return await self._run(self._commands.expire(key, ttl_ms, min_replicas), timeout)

    async def ttl(
        self, key: Key, *, replica_ok: bool | None = None, timeout: float | None = None
    ) -> int:
        """Remaining TTL in ms; -1 without a TTL, -2 when missing."""
        return await self._run(self._commands.ttl(key, replica_ok), timeout)

    async def incr(
        self,
        key: Key,
        delta: int = 1,
        *,
        min_replicas: int | None = None,
        timeout: float | None = None,
    ) -> int:
        """Add ``delta`` to an integer value and return the result (never retried once sent)."""
        return await self._run(self._commands.incr(key, delta, min_replicas), timeout)

    async def mget(
        self,
        keys: Iterable[Key],
        *,
        replica_ok: bool | None = None,
        timeout: float | None = None,
    ) -> list[Any]:
        """Values (or None) for ``keys``, in order."""
        return await self._run(self._commands.mget(keys, replica_ok), timeout)

    async def mset(
        self,
        items: Mapping[Any, Any] | Iterable[tuple[Any, Any]],
        *,
        ttl_ms: int | None = None,
        min_replicas: int | None = None,
        timeout: float | None = None,
    ) -> None:
        """Write many keys with one TTL."""
        return await self._run(self._commands.mset(items, ttl_ms, min_replicas), timeout)

    async def mdelete(
        self, keys: Iterable[Key], *, min_replicas: int | None = None, timeout: float | None = None
    ) -> int:
        """Remove ``keys``; how many existed."""
        return await self._run(self._commands.mdelete(keys, min_replicas), timeout)


class AsyncPipeline(Batch):
    """Operations collected for one round trip per node (see :meth:`AsyncClient.pipeline`)."""

    def __init__(self, client: AsyncClient, timeout: float | None) -> None:
        super().__init__(client._commands)
        self._client = client
        self._timeout = timeout

    async def execute(self, *, raise_on_error: bool = True) -> list[Any]:
        """Send every operation added so far; their results, in order (see Pipeline.execute)."""
        self.results = await self._client._execute(self._take(), self._timeout)
        return finish(self.results, raise_on_error)

    async def __aenter__(self) -> AsyncPipeline:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and self.results is None:
            await self.execute()
