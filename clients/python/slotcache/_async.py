"""The asyncio client: performs the core's actions on ``grpc.aio`` channels, concurrently.

This module is the I/O shell only. Routing, retries and refresh decisions
live in :mod:`slotcache._core`; here the calls of one step run concurrently,
sleeps are awaited, and a refresh is one shared task that any number of
callers can wait on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import TypeVar

import grpc

from slotcache import _commands as cmd
from slotcache._channels import CHANNEL_OPTIONS, ChannelPool
from slotcache._commands import BytesLike, Command
from slotcache._core import (
    DEFAULT_ADDRESS,
    DEFAULT_MAX_REDIRECTS,
    DEFAULT_TIMEOUT_S,
    REDIRECT_METADATA,
    Action,
    Call,
    ClientCore,
    Outcome,
    Plan,
    Refresh,
    Routing,
    Sleep,
)
from slotcache._retry import RetryPolicy
from slotcache._stats import ClientStats
from slotcache.errors import Cancelled, SlotcacheError, Timeout, from_rpc_error

T = TypeVar("T")


def _connect(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


def _consume(task: asyncio.Task[None]) -> None:
    """Mark a refresh's failure as seen; the core has counted it, and callers got it."""
    if not task.cancelled():
        task.exception()


class AsyncClient:
    """An asyncio slotcache client. Use it with ``async with``, or await :meth:`close`.

    Takes the same arguments as :class:`slotcache.Client`; see docs/client.md.
    Create and use it on one event loop.
    """

    def __init__(
        self,
        addresses: str | Sequence[str] = DEFAULT_ADDRESS,
        *,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        routing: Routing = "smart",
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._core = ClientCore(
            addresses, timeout=timeout, routing=routing, max_redirects=max_redirects, retry=retry
        )
        self._closed = False
        self._pool: ChannelPool[grpc.aio.Channel] = ChannelPool(_connect)
        self._refresh_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def stats(self) -> ClientStats:
        """Counters: redirects followed, map refreshes, retries."""
        return self._core.stats

    @property
    def routing(self) -> Routing:
        """``"smart"`` or ``"proxy"``."""
        return self._core.routing

    def owner_of(self, key: BytesLike) -> str | None:
        """The address a call for ``key`` would go to now (None before the map is loaded)."""
        return self._core.owner_of(cmd.as_bytes(key, "key"))

    async def close(self) -> None:
        """Close every channel; in-flight calls fail with Cancelled."""
        self._closed = True
        task = self._refresh_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, SlotcacheError):
                await task
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

    async def _perform(self, action: Action) -> Outcome:
        if isinstance(action, Call):
            return await self._call(action)
        if isinstance(action, Sleep):
            await asyncio.sleep(action.seconds)
            return None
        return await self._refresh_now(action)

    async def _call(self, call: Call) -> Outcome:
        try:
            method = self._pool.method(call.address, call.rpc)
            return await method(
                call.request,
                timeout=call.timeout,
                metadata=REDIRECT_METADATA if call.redirect else None,
            )
        except grpc.RpcError as exc:
            return from_rpc_error(exc)
        except (ValueError, grpc.aio.UsageError):  # the pool or the channel was closed
            return Cancelled("the call was cancelled: the client was closed")
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our caller is being cancelled
            # grpc.aio raises CancelledError when the call itself was cancelled (the
            # channel closed under it); that is a failed call, as in Client, and must
            # not look like a cancellation of the caller's task.
            return Cancelled("the call was cancelled: the client was closed")

    def _start_refresh(self, initial: bool, timeout: float | None) -> asyncio.Task[None]:
        """The running refresh, or a new one: concurrent callers share one Topology round."""
        task = self._refresh_task
        if task is None or task.done():
            task = asyncio.create_task(self._drive(self._core.refresh_plan(initial, timeout)))
            task.add_done_callback(_consume)
            self._refresh_task = task
        return task

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
        if not self._closed and self._core.take_refresh_request():
            self._start_refresh(False, None)

    # ---- commands: see slotcache._commands for their semantics -------------

    async def get(self, key: BytesLike, *, timeout: float | None = None) -> bytes | None:
        """Return the value of ``key``, or None if it is missing."""
        return await self._run(cmd.get(key), timeout)

    async def set(
        self,
        key: BytesLike,
        value: BytesLike,
        *,
        ttl_ms: int | None = None,
        if_absent: bool = False,
        if_present: bool = False,
        keep_ttl: bool = False,
        timeout: float | None = None,
    ) -> bool:
        """Write ``key``; False when a condition left it unwritten."""
        return await self._run(
            cmd.set_(key, value, ttl_ms, if_absent, if_present, keep_ttl), timeout
        )

    async def delete(self, key: BytesLike, *, timeout: float | None = None) -> bool:
        """Remove ``key``; True if it existed."""
        return await self._run(cmd.delete(key), timeout)

    async def exists(self, key: BytesLike, *, timeout: float | None = None) -> bool:
        """Whether ``key`` is held."""
        return await self._run(cmd.exists(key), timeout)

    async def expire(
        self, key: BytesLike, ttl_ms: int | None, *, timeout: float | None = None
    ) -> bool:
        """Set the TTL of ``key`` (None clears it); False if the key is missing."""
        return await self._run(cmd.expire(key, ttl_ms), timeout)

    async def ttl(self, key: BytesLike, *, timeout: float | None = None) -> int:
        """Remaining TTL in ms; -1 without a TTL, -2 when missing."""
        return await self._run(cmd.ttl(key), timeout)

    async def incr(self, key: BytesLike, delta: int = 1, *, timeout: float | None = None) -> int:
        """Add ``delta`` to an integer value and return the result."""
        return await self._run(cmd.incr(key, delta), timeout)

    async def mget(
        self, keys: Iterable[BytesLike], *, timeout: float | None = None
    ) -> list[bytes | None]:
        """Values (or None) for ``keys``, in order."""
        return await self._run(cmd.mget(keys), timeout)

    async def mset(
        self,
        items: Mapping[bytes, BytesLike] | Iterable[tuple[BytesLike, BytesLike]],
        *,
        ttl_ms: int | None = None,
        timeout: float | None = None,
    ) -> None:
        """Write many keys with one TTL."""
        return await self._run(cmd.mset(items, ttl_ms), timeout)

    async def mdelete(self, keys: Iterable[BytesLike], *, timeout: float | None = None) -> int:
        """Remove ``keys``; how many existed."""
        return await self._run(cmd.mdelete(keys), timeout)
