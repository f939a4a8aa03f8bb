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
from typing import Any, Literal, Protocol, cast

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
# The SDK's routing modes (its own alias is private).
Routing = Literal["smart", "proxy"]


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


class Process(Protocol):
    """A started server as the launchers return it (ServerProcess, ChildProcess)."""

    @property
    def port(self) -> int: ...
    @property
    def pid(self) -> int: ...


@dataclass(frozen=True)
class Node:
    """One server process: the port its clients use and its process id (for CPU readings)."""

    port: int
    pid: int

    @property
    def address(self) -> str:
        """``host:port`` on loopback."""
        return f"{LOOPBACK}:{self.port}"


@dataclass(frozen=True)
class Target:
    """What one side of a comparison drives: a peer's server(s) and how its client routes.

    Most targets are one process. A slotcache cluster is several, and then
    ``routing`` says how the SDK reaches them: ``"smart"`` sends each key to
    its owner, ``"proxy"`` sends everything to the first node (the entry),
    which forwards. CPU is read from every node, because a forwarded call
    costs CPU on two of them.
    """

    peer: str
    nodes: tuple[Node, ...]
    routing: Routing = "smart"
    # A slotcache user's token, for nodes with users (sent by the SDK with every call).
    token: str | None = None
    # How the slotcache SDK connects (None: plaintext).
    tls: slotcache.TlsOptions | None = None

    def __post_init__(self) -> None:
        if not self.nodes:
            raise ValueError("a target needs at least one node")

    @classmethod
    def of(cls, peer: str, *processes: Process, routing: Routing = "smart") -> Target:
        """The target served by ``processes``; the first is the entry node."""
        return cls(peer, tuple(Node(p.port, p.pid) for p in processes), routing)

    @property
    def port(self) -> int:
        """The entry node's port."""
        return self.nodes[0].port

    @property
    def pid(self) -> int:
        """The entry node's process id."""
        return self.nodes[0].pid

    @property
    def address(self) -> str:
        """The entry node's ``host:port``."""
        return self.nodes[0].address

    @property
    def pids(self) -> tuple[int, ...]:
        """Every node's process id."""
        return tuple(n.pid for n in self.nodes)

    @property
    def seeds(self) -> list[str]:
        """What the slotcache SDK is given: every node when it routes, only the entry to proxy.

        A proxy-mode client handed every address would fail over to the next
        one on errors, which is not what "pointed at one node" measures.
        """
        return [n.address for n in self.nodes] if self.routing == "smart" else [self.address]


@contextlib.asynccontextmanager
async def async_client(target: Target, concurrency: int) -> AsyncIterator[AsyncKV]:
    """The peer's asyncio client, able to serve ``concurrency`` tasks at once.

    slotcache multiplexes every call over one HTTP/2 channel; redis-py needs
    one connection per in-flight command, so its pool is sized to the tasks.
    """
    if target.peer == SLOTCACHE:
        async with slotcache.AsyncClient(
            target.seeds, routing=target.routing, tls=target.tls, token=target.token
        ) as sc:
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
        with slotcache.Client(
            target.seeds, routing=target.routing, tls=target.tls, token=target.token
        ) as sc:
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


def redirects(kv: object) -> int | None:
    """MOVED replies a slotcache client has followed so far; None for another peer's client."""
    if isinstance(kv, slotcache.AsyncClient | slotcache.Client):
        return kv.stats.redirects
    return None


def slotcache_stats(target: Target | Node) -> dict[str, int]:
    """The (entry) node's counters from the Admin Info RPC (ops counts, keys, memory.used...)."""
    with grpc.insecure_channel(target.address) as channel:
        reply = admin_pb2_grpc.AdminStub(channel).Info(admin_pb2.InfoRequest(), timeout=10)
        return dict(reply.stats)


def redis_info(target: Target) -> dict[str, Any]:
    """redis-server's INFO, as redis-py parses it."""
    with redis.Redis(host=LOOPBACK, port=target.port) as rc:
        info: dict[str, Any] = rc.info()
        return info
