"""The blocking client: performs the core's calls with a blocking gRPC channel."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import grpc

from slotcache import _commands as cmd
from slotcache._commands import BytesLike, Command
from slotcache._core import CHANNEL_OPTIONS, DEFAULT_TIMEOUT_S, Call, ClientCore, unary_methods
from slotcache.errors import from_rpc_error

T = TypeVar("T")


class Client:
    """A blocking slotcache client. Use it as a context manager, or call :meth:`close`."""

    def __init__(
        self, address: str = "127.0.0.1:7000", *, timeout: float | None = DEFAULT_TIMEOUT_S
    ) -> None:
        self._core = ClientCore(timeout)
        self._closed = False
        self._channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._rpcs = {
            name: self._channel.unary_unary(
                path,
                request_serializer=req.SerializeToString,
                response_deserializer=rep.FromString,
            )
            for name, path, req, rep in unary_methods()
        }

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
        """Close the channel; in-flight calls are cancelled."""
        self._closed = True
        self._channel.close()

    def _run(self, command: Command[T], timeout: float | None) -> T:
        if self._closed:
            raise ValueError("the client is closed")
        plan = self._core.plan(command, timeout)
        try:
            calls = next(plan)
            while True:
                calls = plan.send([self._perform(c) for c in calls])
        except StopIteration as done:
            result: T = done.value
            return result

    def _perform(self, call: Call) -> Any:
        try:
            return self._rpcs[call.rpc](call.request, timeout=call.timeout)
        except grpc.RpcError as exc:
            return from_rpc_error(exc)

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
