"""The blocking client: performs the core's actions with blocking gRPC channels.

This module is the I/O shell only. Routing, retries and refresh decisions
live in :mod:`slotcache._core`; here calls run one after another, sleeps
block, and a background refresh runs on a short-lived daemon thread.
"""

from __future__ import annotations

import threading
import time
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


def _connect(address: str) -> grpc.Channel:
    return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)


class Client:
    """A blocking slotcache client. Use it as a context manager, or call :meth:`close`.

    ``addresses`` is one ``"host:port"``, a comma-separated list, or a
    sequence of them. With ``routing="smart"`` (the default) they are seeds:
    the client loads the slot map from the first that answers and then talks
    to every node directly. With ``routing="proxy"`` every call goes to the
    first address, which forwards it. See docs/client.md. A client may be
    shared by threads.
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
        self._pool: ChannelPool[grpc.Channel] = ChannelPool(_connect)
        # Held while a refresh runs: callers that need the map wait on it,
        # background refreshes skip when it is taken.
        self._refresh_lock = threading.Lock()
        self._refresher: threading.Thread | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

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

    def close(self) -> None:
        """Close every channel; in-flight calls fail with Cancelled."""
        self._closed = True
        for channel in self._pool.take_all():
            channel.close()
        refresher = self._refresher
        if refresher is not None and refresher is not threading.current_thread():
            refresher.join(1.0)

    # ---- performing the core's actions ---------------------------------------

    def _run(self, command: Command[T], timeout: float | None) -> T:
        if self._closed:
            raise ValueError("the client is closed")
        return self._drive(self._core.plan(command, timeout))

    def _drive(self, plan: Plan[T]) -> T:
        try:
            actions = next(plan)
            while True:
                self._maybe_refresh_in_background()
                actions = plan.send([self._perform(a) for a in actions])
        except StopIteration as done:
            self._maybe_refresh_in_background()
            result: T = done.value
            return result

    def _perform(self, action: Action) -> Outcome:
        if isinstance(action, Call):
            return self._call(action)
        if isinstance(action, Sleep):
            time.sleep(action.seconds)
            return None
        return self._refresh_now(action)

    def _call(self, call: Call) -> Outcome:
        try:
            method = self._pool.method(call.address, call.rpc)
            return method(
                call.request,
                timeout=call.timeout,
                metadata=REDIRECT_METADATA if call.redirect else None,
            )
        except grpc.RpcError as exc:
            return from_rpc_error(exc)
        except ValueError:  # the pool or the channel was closed under us
            return Cancelled("the call was cancelled: the client was closed")

    def _refresh_now(self, action: Refresh) -> SlotcacheError | None:
        """Refresh in this thread, or wait for the refresh another thread is running."""
        wait = -1.0 if action.timeout is None else action.timeout
        if not self._refresh_lock.acquire(timeout=wait):
            return Timeout("timed out waiting for a slot map refresh") if action.initial else None
        try:
            self._drive(self._core.refresh_plan(action.initial, action.timeout))
            return None
        except SlotcacheError as exc:
            return exc
        finally:
            self._refresh_lock.release()

    def _maybe_refresh_in_background(self) -> None:
        if self._closed or not self._core.take_refresh_request():
            return
        thread = threading.Thread(
            target=self._background_refresh, name="slotcache-refresh", daemon=True
        )
        self._refresher = thread
        thread.start()

    def _background_refresh(self) -> None:
        if not self._refresh_lock.acquire(blocking=False):
            return  # a refresh is already running
        try:
            self._drive(self._core.refresh_plan(False, None))
        except SlotcacheError:
            pass  # counted in stats.refresh_failures; the next MOVED or UNAVAILABLE asks again
        finally:
            self._refresh_lock.release()

    # ---- commands: see slotcache._commands for their semantics -------------

    def get(self, key: BytesLike, *, timeout: float | None = None) -> bytes | None:
        """Return the value of ``key``, or None if it is missing."""
        return self._run(cmd.get(key), timeout)

    def set(
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
        return self._run(cmd.set_(key, value, ttl_ms, if_absent, if_present, keep_ttl), timeout)

    def delete(self, key: BytesLike, *, timeout: float | None = None) -> bool:
        """Remove ``key``; True if it existed."""
        return self._run(cmd.delete(key), timeout)

    def exists(self, key: BytesLike, *, timeout: float | None = None) -> bool:
        """Whether ``key`` is held."""
        return self._run(cmd.exists(key), timeout)

    def expire(self, key: BytesLike, ttl_ms: int | None, *, timeout: float | None = None) -> bool:
        """Set the TTL of ``key`` (None clears it); False if the key is missing."""
        return self._run(cmd.expire(key, ttl_ms), timeout)

    def ttl(self, key: BytesLike, *, timeout: float | None = None) -> int:
        """Remaining TTL in ms; -1 without a TTL, -2 when missing."""
        return self._run(cmd.ttl(key), timeout)

    def incr(self, key: BytesLike, delta: int = 1, *, timeout: float | None = None) -> int:
        """Add ``delta`` to an integer value and return the result."""
        return self._run(cmd.incr(key, delta), timeout)

    def mget(
        self, keys: Iterable[BytesLike], *, timeout: float | None = None
    ) -> list[bytes | None]:
        """Values (or None) for ``keys``, in order."""
        return self._run(cmd.mget(keys), timeout)

    def mset(
        self,
        items: Mapping[bytes, BytesLike] | Iterable[tuple[BytesLike, BytesLike]],
        *,
        ttl_ms: int | None = None,
        timeout: float | None = None,
    ) -> None:
        """Write many keys with one TTL."""
        return self._run(cmd.mset(items, ttl_ms), timeout)

    def mdelete(self, keys: Iterable[BytesLike], *, timeout: float | None = None) -> int:
        """Remove ``keys``; how many existed."""
        return self._run(cmd.mdelete(keys), timeout)
