"""Single-flight: at most one load per key at a time within this process.

When many callers miss the same key together (a cold start, an expiry
under load), one of them, the leader, computes the value; the others wait
for its result instead of stampeding the backing store. A caller that
holds a still-valid (stale-soon) value while a refresh is running returns
that value at once rather than waiting. One class per concurrency model;
the decisions around them are in :mod:`slotcache._getorset`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from slotcache._stats import ClientStats


class _Flight:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class ThreadFlights:
    """Single-flight across the threads sharing one blocking Client."""

    def __init__(self, stats: ClientStats) -> None:
        self._lock = threading.Lock()
        self._flights: dict[bytes, _Flight] = {}
        self._stats = stats

    def run(self, key: bytes, load: Callable[[], Any], stale: tuple[Any] | None = None) -> Any:
        """``load()`` unless a load of ``key`` is running: then its result (or ``stale[0]``)."""
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            if stale is not None:
                return stale[0]
            self._stats.single_flight_waits += 1
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value
        try:
            flight.value = load()
            return flight.value
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()

    def running(self) -> int:
        """Loads in progress (for tests and introspection)."""
        return len(self._flights)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a flight's exception as seen: the leader raised it already."""
    if not future.cancelled():
        future.exception()


class AsyncFlights:
    """Single-flight across the tasks sharing one AsyncClient (one event loop)."""

    def __init__(self, stats: ClientStats) -> None:
        self._flights: dict[bytes, asyncio.Future[Any]] = {}
        self._stats = stats

    async def run(
        self, key: bytes, load: Callable[[], Awaitable[Any]], stale: tuple[Any] | None = None
    ) -> Any:
        """Await ``load()``, unless a load of ``key`` runs: then its result (or ``stale[0]``)."""
        while True:
            flight = self._flights.get(key)
            if flight is None:
                break
            if stale is not None:
                return stale[0]
            self._stats.single_flight_waits += 1
            try:
                return await asyncio.shield(flight)
            except asyncio.CancelledError:
                if not flight.cancelled():
                    raise  # this caller was cancelled
                # The leader was cancelled: try again (and perhaps lead).
        flight = asyncio.get_running_loop().create_future()
        flight.add_done_callback(_retrieve)
        self._flights[key] = flight
        try:
            value = await load()
        except asyncio.CancelledError:
            flight.cancel()
            raise
        except BaseException as exc:
            flight.set_exception(exc)
            raise
        else:
            flight.set_result(value)
            return value
        finally:
            del self._flights[key]

    def running(self) -> int:
        """Loads in progress (for tests and introspection)."""
        return len(self._flights)
