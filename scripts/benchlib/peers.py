"""The clients under test, seen through one small key-value interface.

slotcache's SDK and redis-py already share method names and argument shapes
for get/set/mget/mset, so the workloads call the clients' own methods directly
(no wrapper adding overhead to one side); the Protocols only tell the type
checker what the workloads rely on.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import grpc
import redis
import redis.asyncio

import slotcache
from benchlib import dataset
from slotcache.ctl.launcher import LOOPBACK
from slotcache.v1 import admin_pb2, admin_pb2_grpc

PRELOAD_BATCH = 1000
SLOTCACHE = "slotcache"
REDIS = "redis"


class AsyncKV(Protocol):
    """What the concurrent workloads call."""

    def get(self, key: bytes) -> Awaitable[Any]: ...
    def set(self, key: bytes, value: bytes) -> Awaitable[Any]: ...
    def mget(self, keys: Sequence[bytes]) -> Awaitable[Any]: ...
    def mset(self, items: Mapping[bytes, bytes]) -> Awaitable[Any]: ...


class SyncKV(Protocol):
    """What the blocking workloads call."""

    def get(self, key: bytes) -> Any: ...
    def set(self, key: bytes, value: bytes) -> Any: ...
    def mget(self, keys: Sequence[bytes]) -> Any: ...
    def mset(self, items: Mapping[bytes, bytes]) -> Any: ...


@dataclass(frozen=True)
class Target:
    """One server to measure: which peer it is, where it listens, and its process id."""

    peer: str
    port: int
    pid: int

    @property
    def address(self) -> str:
        """``host:port`` on loopback."""
        return f"{LOOPBACK}:{self.port}"


@contextlib.asynccontextmanager
async def async_client(target: Target, concurrency: int) -> AsyncIterator[AsyncKV]:
    """The peer's asyncio client, able to serve ``concurrency`` tasks at once.

    slotcache multiplexes every call over one HTTP/2 channel; redis-py needs
    one connection per in-flight command, so its pool is sized to the tasks.
    """
    if target.peer == SLOTCACHE:
        async with slotcache.AsyncClient(target.address) as sc:
            yield cast(AsyncKV, sc)
    else:
        rc = redis.asyncio.Redis(host=LOOPBACK, port=target.port, max_connections=concurrency)
        try:
            yield cast(AsyncKV, rc)
        finally:
            await rc.aclose()


@contextlib.contextmanager
def sync_client(target: Target) -> Iterator[SyncKV]:
    """The peer's blocking client."""
    if target.peer == SLOTCACHE:
        with slotcache.Client(target.address) as sc:
            yield cast(SyncKV, sc)
    else:
        with redis.Redis(host=LOOPBACK, port=target.port) as rc:
            yield cast(SyncKV, rc)


def preload(kv: SyncKV, n: int, value: bytes) -> None:
    """Write the first ``n`` keys with MSET batches, so reads in the workloads hit."""
    for batch in dataset.batches(n, PRELOAD_BATCH):
        kv.mset(dict.fromkeys(map(dataset.key, batch), value))


def check_loaded(kv: SyncKV, n: int, value: bytes) -> None:
    """Raise unless a spread of the first ``n`` keys reads back ``value``."""
    probe = sorted({0, n // 3, n // 2, n - 1})
    got = kv.mget([dataset.key(i) for i in probe])
    if list(got) != [value] * len(probe):
        raise RuntimeError(f"preloaded keys {probe} did not read back as written")


def slotcache_stats(target: Target) -> dict[str, int]:
    """The node's counters from the Admin Info RPC (ops counts, keys, memory.used...)."""
    with grpc.insecure_channel(target.address) as channel:
        reply = admin_pb2_grpc.AdminStub(channel).Info(admin_pb2.InfoRequest(), timeout=10)
        return dict(reply.stats)


def redis_info(target: Target) -> dict[str, Any]:
    """redis-server's INFO, as redis-py parses it."""
    with redis.Redis(host=LOOPBACK, port=target.port) as rc:
        info: dict[str, Any] = rc.info()
        return info
