"""Both SDK clients behind one blocking interface, so one test body checks both."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Coroutine
from typing import Any

import slotcache
from tests.support import security


class AsyncDriver:
    """An AsyncClient on a private event loop thread, with blocking methods like Client's.

    Attributes that are not coroutines (``stats``, ``owner_of``) pass straight through.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def make() -> slotcache.AsyncClient:
            return slotcache.AsyncClient(*args, **kwargs)

        self.client = self._call(make())

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(60)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if not inspect.iscoroutinefunction(attr):
            return attr
        return lambda *args, **kwargs: self._call(attr(*args, **kwargs))

    def close(self) -> None:
        try:
            self._call(self.client.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()


def client(*args: Any, **kwargs: Any) -> slotcache.Client:
    """A Client that connects as this session's servers require (see tests.support.security)."""
    return slotcache.Client(*args, **security.current().client_kwargs(), **kwargs)


def open_client(kind: str, *args: Any, **kwargs: Any) -> Any:
    """A Client (``kind`` "sync") or a driven AsyncClient ("async"); the caller closes it."""
    if kind == "sync":
        return client(*args, **kwargs)
    return AsyncDriver(*args, **security.current().client_kwargs(), **kwargs)
