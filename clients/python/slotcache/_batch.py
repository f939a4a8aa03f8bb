"""Explicit pipelines: collect operations, send them together, get every result in order.

Auto-pipelining already batches concurrent calls. An explicit pipeline is
for one caller with many independent operations: a blocking caller would
otherwise wait one round trip per operation. Every operation still runs
its own plan (routing, MOVED, retries) in :mod:`slotcache._core`; the
clients start all the plans at once, so the first attempt of every
operation for a node leaves in one message on that node's stream.

Operations are independent: there is no transaction, and a failed one does
not stop the others. Operations on the same node run in the order they were
added (a node serves one message in order).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Self

from slotcache._commands import Command, Commands, Key


class Batch:
    """The operations collected so far; each method adds one and returns the batch (chainable)."""

    def __init__(self, commands: Commands) -> None:
        self._commands_factory = commands
        self._commands: list[Command[Any]] = []
        #: The results of the last execution, in the order the operations were added.
        self.results: list[Any] | None = None

    def __len__(self) -> int:
        return len(self._commands)

    def _add(self, command: Command[Any]) -> Self:
        if self.results is not None:
            raise ValueError("this pipeline was executed already; start a new one")
        self._commands.append(command)
        return self

    def _take(self) -> list[Command[Any]]:
        if self.results is not None:
            raise ValueError("this pipeline was executed already; start a new one")
        commands, self._commands = self._commands, []
        return commands

    def get(self, key: Key, *, replica_ok: bool | None = None) -> Self:
        """Add a read of ``key`` (its value, or None)."""
        return self._add(self._commands_factory.get(key, replica_ok))

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
    ) -> Self:
        """Add a write of ``key`` (result: whether it was applied)."""
        command = self._commands_factory.set(
            key, value, ttl_ms, if_absent, if_present, keep_ttl, min_replicas
        )
        return self._add(command)

    def delete(self, key: Key, *, min_replicas: int | None = None) -> Self:
        """Add a removal of ``key`` (result: whether it existed)."""
        return self._add(self._commands_factory.delete(key, min_replicas))

    def exists(self, key: Key, *, replica_ok: bool | None = None) -> Self:
        """Add an existence check of ``key``."""
        return self._add(self._commands_factory.exists(key, replica_ok))

    def expire(self, key: Key, ttl_ms: int | None, *, min_replicas: int | None = None) -> Self:
        """Add a TTL change of ``key`` (None clears it)."""
        return self._add(self._commands_factory.expire(key, ttl_ms, min_replicas))

    def ttl(self, key: Key, *, replica_ok: bool | None = None) -> Self:
        """Add a TTL read of ``key`` (ms; -1 none, -2 missing)."""
        return self._add(self._commands_factory.ttl(key, replica_ok))

    def incr(self, key: Key, delta: int = 1, *, min_replicas: int | None = None) -> Self:
        """Add an increment of ``key`` by ``delta`` (result: the new value)."""
        return self._add(self._commands_factory.incr(key, delta, min_replicas))

    def mget(self, keys: Iterable[Key], *, replica_ok: bool | None = None) -> Self:
        """Add a read of many keys (result: values in order)."""
        return self._add(self._commands_factory.mget(keys, replica_ok))

    def mset(
        self,
        items: Mapping[Any, Any] | Iterable[tuple[Any, Any]],
        *,
        ttl_ms: int | None = None,
        min_replicas: int | None = None,
    ) -> Self:
        """Add a write of many keys."""
        return self._add(self._commands_factory.mset(items, ttl_ms, min_replicas))

    def mdelete(self, keys: Iterable[Key], *, min_replicas: int | None = None) -> Self:
        """Add a removal of many keys (result: how many existed)."""
        return self._add(self._commands_factory.mdelete(keys, min_replicas))


def finish(results: list[Any], raise_on_error: bool) -> list[Any]:
    """The results of an execution; with ``raise_on_error``, the first failure is raised."""
    if raise_on_error:
        for result in results:
            if isinstance(result, Exception):
                raise result
    return results
