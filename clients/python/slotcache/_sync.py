"""The blocking client: performs the core's actions with blocking gRPC channels.

This module is the I/O shell only. Routing, retries, refresh decisions and
metrics live in :mod:`slotcache._core`, batching in
:mod:`slotcache._pipeline`. Here a step's operations are all started before
any is waited for (stream operations for one node are queued together, so
they leave in one message; unary calls use gRPC futures), sleeps block, and
a background refresh runs on a short-lived daemon thread.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import grpc

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
from slotcache._invalidations import ThreadSubscriber
from slotcache._nearcache import NOT_CACHED
from slotcache._pipeline import MAX_IN_FLIGHT, NodeBatcher
from slotcache._singleflight import ThreadFlights
from slotcache._thread_pipe import ThreadPipe
from slotcache.errors import Cancelled, SlotcacheError, Timeout, from_rpc_error
from slotcache.v1 import cache_pb2 as pb

T = TypeVar("T")

_CLOSED = "the call was cancelled: the client was closed"


class _Failed:
    """A plan that raised, kept in place among the results of several plans."""

    __slots__ = ("error",)

    def __init__(self, error: SlotcacheError) -> None:
        self.error = error


class Client(ClientBase):
    """A blocking slotcache client. Use it as a context manager, or call :meth:`close`.

    ``addresses`` is one ``"host:port"``, a comma-separated list, or a
    sequence of them. With ``routing="smart"`` (the default) they are seeds:
    the client loads the slot map from the first that answers and then talks
    to every node directly, over one Pipeline stream per node. With
    ``routing="proxy"`` every call goes to the first address, which forwards
    it. A client may (and should) be shared by threads: their concurrent
    calls to a node travel together. Values that are not bytes go through
    ``codec`` (msgpack by default; ``None`` for bytes only); a ``keyring``
    encrypts every value. A node with users needs ``token=`` (or ``user=``
    with ``password=``), sent with every call and stream. See docs/client.md
    for every option.
    """

    def _setup_io(self) -> None:
        self._pool: ChannelPool[grpc.Channel] = ChannelPool(
            connector(grpc.insecure_channel, grpc.secure_channel, self._tls)
        )
        # By (address, redirect, near-cache subscription id): tracked reads need a
        # stream opened with their id. A stream of an id that is gone has ended
        # (its node refused it or the connection broke) and holds no thread.
        self._pipes: dict[tuple[str, bool, str | None], ThreadPipe] = {}
        self._pipes_lock = threading.Lock()
        self._subscribers: dict[str, ThreadSubscriber] = {}
        # Held while a refresh runs: callers that need the map wait on it,
        # background refreshes skip when it is taken.
        self._refresh_lock = threading.Lock()
        self._refresher: threading.Thread | None = None
        self._flights = ThreadFlights(self._core.stats)
        self._random = random.Random()

    def _subscribe(self, address: str) -> None:
        near = self._near
        assert near is not None
        with self._pipes_lock:
            if self._closed or address in self._subscribers:
                return
            self._subscribers[address] = ThreadSubscriber(
                address, near, self._subscription_opener(address), self._random
            )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Fail outstanding operations with Cancelled, end every stream, close every channel."""
        self._closed = True
        with self._pipes_lock:
            pipes = list(self._pipes.values())
            self._pipes.clear()
            subscribers = list(self._subscribers.values())
            self._subscribers.clear()
        for subscriber in subscribers:
            subscriber.close()
        if self._near is not None:
            self._near.clear()
        for pipe in pipes:
            pipe.close()
        for channel in self._pool.take_all():
            channel.close()
        refresher = self._refresher
        if refresher is not None and refresher is not threading.current_thread():
            refresher.join(1.0)

    # ---- performing the core's actions ---------------------------------------

    def _run(self, command: Command[T], timeout: float | None) -> T:
        self._check_open()
        return self._drive(self._core.plan(command, timeout))

    def _drive(self, plan: Plan[T]) -> T:
        (result,) = self._drive_all([plan])
        if type(result) is _Failed:
            raise result.error
        out: T = result
        return out

    def _drive_all(self, plans: Sequence[Plan[Any]]) -> list[Any]:
        """Run plans side by side: each step of every plan is started before any is awaited."""
        results: list[Any] = [None] * len(plans)
        steps: dict[int, list[Action]] = {}
        for i, plan in enumerate(plans):
            self._advance(i, plan, None, steps, results)
        while steps:
            outcomes = self._perform(steps)
            self._maybe_refresh_in_background()
            current, steps = steps, {}
            for i in current:
                self._advance(i, plans[i], outcomes[i], steps, results)
        self._maybe_refresh_in_background()
        return results

    @staticmethod
    def _advance(
        i: int,
        plan: Plan[Any],
        outcomes: list[Outcome] | None,
        steps: dict[int, list[Action]],
        results: list[Any],
    ) -> None:
        try:
            steps[i] = next(plan) if outcomes is None else plan.send(outcomes)
        except StopIteration as done:
            results[i] = done.value
        except SlotcacheError as exc:
            results[i] = _Failed(exc)

    def _perform(self, steps: dict[int, list[Action]]) -> dict[int, list[Outcome]]:
        """Perform one step of several plans: refresh, start every call, sleep, collect."""
        out: dict[int, list[Outcome]] = {i: [None] * len(actions) for i, actions in steps.items()}
        streamed: dict[ThreadPipe, list[tuple[int, int, Call]]] = {}
        unary: list[tuple[int, int, Call, Any]] = []
        refreshed: list[Any] = []
        sleep = 0.0
        for i, actions in steps.items():
            for j, action in enumerate(actions):
                if isinstance(action, Refresh):
                    if not refreshed:  # plans in one step share one refresh
                        refreshed.append(self._refresh_now(action))
                    out[i][j] = refreshed[0]
                elif isinstance(action, Sleep):
                    sleep = max(sleep, action.seconds)
                elif action.stream:
                    pipe = self._pipe(action.address, action.redirect, action.track)
                    streamed.setdefault(pipe, []).append((i, j, action))
                else:
                    unary.append((i, j, action, self._start_unary(action)))
        waiting = []
        for pipe, calls in streamed.items():
            waiters = pipe.submit_many([(c.rpc, c.request) for _, _, c in calls])
            started = time.monotonic()
            for (i, j, call), (waiter, op) in zip(calls, waiters, strict=True):
                waiting.append((i, j, call, pipe, waiter, op, started))
        if sleep:
            time.sleep(sleep)
        for i, j, call, pipe, waiter, op, started in waiting:
            timeout = call.timeout
            if timeout is not None:
                timeout = max(0.0, started + timeout - time.monotonic())
            out[i][j] = pipe.wait(waiter, op, timeout)
        for i, j, call, future in unary:
            out[i][j] = self._finish_unary(call, future)
        return out

    def _pipe(self, address: str, redirect: bool, track: str | None) -> ThreadPipe:
        key = (address, redirect, track)
        pipe = self._pipes.get(key)
        if pipe is not None:
            return pipe
        with self._pipes_lock:
            pipe = self._pipes.get(key)
            if pipe is None:
                batcher = NodeBatcher(
                    address, self._core.stats, max_in_flight=self._max_in_flight or MAX_IN_FLIGHT
                )
                metadata = call_metadata(redirect, False, track, self._credentials)
                pool = self._pool

                def open_stream(requests: Iterator[pb.PipelineRequest]) -> Any:
                    return pool.pipeline(address)(requests, metadata=metadata)

                pipe = self._pipes[key] = ThreadPipe(batcher, open_stream, address)
                if self._closed:
                    pipe.close()
            return pipe

    def _start_unary(self, call: Call) -> Any:
        """Start a unary call; its outcome is collected by :meth:`_finish_unary`."""
        metadata = call_metadata(call.redirect, call.replica, call.track, self._credentials)
        try:
            method = self._pool.method(call.address, call.rpc)
            return method.future(call.request, timeout=call.timeout, metadata=metadata)
        except ValueError:  # the pool or the channel was closed under us
            return Cancelled(_CLOSED)

    @staticmethod
    def _finish_unary(call: Call, future: Any) -> Outcome:
        if isinstance(future, SlotcacheError):
            return future
        try:
            reply = future.result()
        except grpc.RpcError as exc:
            return from_rpc_error(exc)
        except (ValueError, grpc.FutureCancelledError):
            return Cancelled(_CLOSED)
        if call.replica:
            return Trailed(reply, dict(future.trailing_metadata() or ()))
        return reply

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
        if self._closed:
            return
        delay = self._core.take_refresh_request()
        if delay is None:
            return
        running = self._refresher
        if running is not None and running.is_alive():
            return  # the refresh it will run covers this request too
        thread = threading.Thread(
            target=self._background_refresh, args=(delay,), name="slotcache-refresh", daemon=True
        )
        self._refresher = thread
        thread.start()

    def _background_refresh(self, delay: float) -> None:
        if delay > 0:
            time.sleep(delay)
        if self._closed or not self._refresh_lock.acquire(blocking=False):
            return  # closed meanwhile, or a refresh is already running
        try:
            self._drive(self._core.refresh_plan(False, None))
        except SlotcacheError:
            pass  # counted in stats.refresh_failures; the next MOVED or UNAVAILABLE asks again
        finally:
            self._refresh_lock.release()

    # ---- explicit pipelines and get_or_set -------------------------------------

    def pipeline(self, *, timeout: float | None = None) -> Pipeline:
        """A batch of operations sent together: ``with client.pipeline() as p: p.get(k) ...``.

        On leaving the block (without an exception) the operations run, one
        message per node, and ``p.results`` holds their results in order; a
        failed operation raises (the first one) unless you call
        ``p.execute(raise_on_error=False)`` yourself, which puts the exception
        in its place among the results.
        """
        self._check_open()
        return Pipeline(self, timeout)

    def _execute(self, commands: list[Command[Any]], timeout: float | None) -> list[Any]:
        self._check_open()
        plans = [self._core.plan(c, timeout) for c in commands]
        return [r.error if type(r) is _Failed else r for r in self._drive_all(plans)]

    def get_or_set(
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

        At most one thread of this client runs ``loader`` for a key at a
        time; the others wait for its result. ``beta > 0`` turns on
        probabilistic early refresh (XFetch): as expiry nears, a reader may
        recompute before the entry expires, while other readers keep getting
        the cached value. ``ttl_jitter`` (a fraction, e.g. 0.1) shortens each
        TTL by a random part of itself so entries written together do not
        expire together. See docs/client.md.
        """
        flow = self._get_or_set(key, ttl_ms, beta, ttl_jitter)
        stored = self._run(flow.read(self._commands), timeout)
        verdict, value = flow.judge(self._values, stored, now_ms(), self._random.random)
        if verdict is Verdict.FRESH:
            return value

        def load() -> Any:
            flow.count_load(verdict, self._core.stats)
            started = now_ms()
            fresh = loader()
            now = now_ms()
            write = flow.write(self._commands, fresh, now - started, now, self._random.random)
            self._run(write, timeout)
            return fresh

        return self._flights.run(flow.key, load, flow.stale(verdict, value))

    # ---- commands: see slotcache._commands for their semantics -------------

    def get(self, key: Key, *, replica_ok: bool | None = None, timeout: float | None = None) -> Any:
        """The value of ``key``, or None if it is missing.

        ``replica_ok=True`` lets a replica of the key's owner answer (possibly
        stale; ``stats.replica_lag_ms`` says by how much). With a near cache,
        a hit returns here, before any command, stream or thread is involved.
        """
        near = self._near
        if near is not None:
            value = self._near_get(near, key)
            if value is not NOT_CACHED:
                return value
        return self._run(self._commands.get(key, replica_ok), timeout)

    def set(
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
        """Write ``key``; False when a condition left it unwritten.

        ``min_replicas=n`` returns only once ``n`` replicas hold the write:
        ``NotEnoughReplicas`` if fewer are in sync (not applied),
        ``ReplicationTimeout`` if they do not confirm in time (applied on the
        primary, durability unknown).
        """
        command = self._commands.set(
            key, value, ttl_ms, if_absent, if_present, keep_ttl, min_replicas
        )
        return self._run(command, timeout)

    def delete(
        self, key: Key, *, min_replicas: int | None = None, timeout: float | None = None
    ) -> bool:
        """Remove ``key``; True if it existed."""
        return self._run(self._commands.delete(key, min_replicas), timeout)

    def exists(
        self, key: Key, *, replica_ok: bool | None = None, timeout: float | None = None
    ) -> bool:
        """Whether ``key`` is held."""
        return self._run(self._commands.exists(key, replica_ok), timeout)

    def expire(
        self,
        key: Key,
        ttl_ms: int | None,
        *,
        min_replicas: int | None = None,
        timeout: float | None = None,
    ) -> bool:
        """Set the TTL of ``key`` (None clears it); False if the key is missing."""
        return self._run(self._commands.expire(key, ttl_ms, min_replicas), timeout)

    def ttl(self, key: Key, *, replica_ok: bool | None = None, timeout: float | None = None) -> int:
        """Remaining TTL in ms; -1 without a TTL, -2 when missing."""
        return self._run(self._commands.ttl(key, replica_ok), timeout)

    def incr(
        self,
        key: Key,
        delta: int = 1,
        *,
        min_replicas: int | None = None,
        timeout: float | None = None,
    ) -> int:
        """Add ``delta`` to an integer value and return the result (never retried once sent)."""
        return self._run(self._commands.incr(key, delta, min_replicas), timeout)

    def mget(
        self,
        keys: Iterable[Key],
        *,
        replica_ok: bool | None = None,
        timeout: float | None = None,
    ) -> list[Any]:
        """Values (or None) for ``keys``, in order."""
        return self._run(self._commands.mget(keys, replica_ok), timeout)

    def mset(
        self,
        items: Mapping[Any, Any] | Iterable[tuple[Any, Any]],
        *,
        ttl_ms: int | None = None,
        min_replicas: int | None = None,
        timeout: float | None = None,
    ) -> None:
        """Write many keys with one TTL."""
        return self._run(self._commands.mset(items, ttl_ms, min_replicas), timeout)

    def mdelete(
        self, keys: Iterable[Key], *, min_replicas: int | None = None, timeout: float | None = None
    ) -> int:
        """Remove ``keys``; how many existed."""
        return self._run(self._commands.mdelete(keys, min_replicas), timeout)


class Pipeline(Batch):
    """Operations collected for one round trip per node (see :meth:`Client.pipeline`)."""

    def __init__(self, client: Client, timeout: float | None) -> None:
        super().__init__(client._commands)
        self._client = client
        self._timeout = timeout

    def execute(self, *, raise_on_error: bool = True) -> list[Any]:
        """Send every operation added so far; their results, in order.

        With ``raise_on_error=False`` a failed operation's exception takes its
        place in the list; otherwise the first one is raised (after every
        operation has completed).
        """
        self.results = self._client._execute(self._take(), self._timeout)
        return finish(self.results, raise_on_error)

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and self.results is None:
            self.execute()
