"""Sans-I/O command definitions: each builds a request and knows how to read its reply.

Both clients run the very same Command objects; only the way the request
reaches the server differs. Input checks that need no server (types, obvious
misuse) happen here so both clients fail the same way, before any I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from slotcache.v1 import cache_pb2 as pb

T = TypeVar("T")
BytesLike = bytes | bytearray | memoryview

NO_TTL = -1
MISSING = -2


@dataclass(frozen=True, slots=True)
class Command(Generic[T]):
    """One Cache RPC: its name, its request, how to read the reply, and whether a retry is safe."""

    rpc: str
    request: Any
    parse: Callable[[Any], T]
    idempotent: bool


def as_bytes(value: object, what: str) -> bytes:
    """Accept bytes-like input and refuse anything else with a clear message."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"{what} must be bytes, not {type(value).__name__}")


def _ttl(ttl_ms: int | None) -> int:
    if ttl_ms is None:
        return 0
    if not isinstance(ttl_ms, int) or isinstance(ttl_ms, bool):
        raise TypeError(f"ttl_ms must be an int, not {type(ttl_ms).__name__}")
    return ttl_ms


def _get_value(reply: pb.GetReply) -> bytes | None:
    return reply.value if reply.found else None


def get(key: BytesLike) -> Command[bytes | None]:
    """Read a key: its value, or None."""
    return Command("Get", pb.GetRequest(key=as_bytes(key, "key")), _get_value, True)


def set_(
    key: BytesLike,
    value: BytesLike,
    ttl_ms: int | None = None,
    if_absent: bool = False,
    if_present: bool = False,
    keep_ttl: bool = False,
) -> Command[bool]:
    """Write a key; the result says whether the write was applied."""
    if if_absent and if_present:
        raise ValueError("if_absent and if_present cannot both be set")
    condition = (
        pb.SET_CONDITION_IF_ABSENT
        if if_absent
        else pb.SET_CONDITION_IF_PRESENT
        if if_present
        else pb.SET_CONDITION_ALWAYS
    )
    request = pb.SetRequest(
        key=as_bytes(key, "key"),
        value=as_bytes(value, "value"),
        ttl_ms=_ttl(ttl_ms),
        condition=condition,
        keep_ttl=keep_ttl,
    )
    # A conditional write that is retried may see its own first attempt.
    return Command("Set", request, lambda r: r.applied, condition == pb.SET_CONDITION_ALWAYS)


def delete(key: BytesLike) -> Command[bool]:
    """Remove a key; True if it existed."""
    return Command("Delete", pb.DeleteRequest(key=as_bytes(key, "key")), lambda r: r.deleted, True)


def exists(key: BytesLike) -> Command[bool]:
    """Whether a key is held."""
    return Command("Exists", pb.ExistsRequest(key=as_bytes(key, "key")), lambda r: r.exists, True)


def expire(key: BytesLike, ttl_ms: int | None) -> Command[bool]:
    """Set a TTL, or clear it with ``ttl_ms=None``; False if the key is missing."""
    if ttl_ms is None:
        request = pb.ExpireRequest(key=as_bytes(key, "key"), clear=True)
    else:
        request = pb.ExpireRequest(key=as_bytes(key, "key"), ttl_ms=_ttl(ttl_ms))
    return Command("Expire", request, lambda r: r.applied, True)


def _remaining(reply: pb.TtlReply) -> int:
    if not reply.found:
        return MISSING
    return reply.ttl_ms if reply.has_ttl else NO_TTL


def ttl(key: BytesLike) -> Command[int]:
    """Remaining TTL in ms; -1 when the key has none, -2 when it is missing (as Redis PTTL)."""
    return Command("Ttl", pb.TtlRequest(key=as_bytes(key, "key")), _remaining, True)


def incr(key: BytesLike, delta: int = 1) -> Command[int]:
    """Add ``delta`` to an integer value; a retry could apply it twice, so none is made."""
    if not isinstance(delta, int) or isinstance(delta, bool):
        raise TypeError(f"delta must be an int, not {type(delta).__name__}")
    request = pb.IncrRequest(key=as_bytes(key, "key"), delta=delta)
    return Command("Incr", request, lambda r: r.value, False)


def _values(reply: pb.MGetReply) -> list[bytes | None]:
    return [r.value if r.found else None for r in reply.results]


def mget(keys: Iterable[BytesLike]) -> Command[list[bytes | None]]:
    """Read many keys; values (or None) in the order of ``keys``."""
    request = pb.MGetRequest(keys=[as_bytes(k, "key") for k in keys])
    return Command("MGet", request, _values, True)


def mset(
    items: Mapping[bytes, BytesLike] | Iterable[tuple[BytesLike, BytesLike]],
    ttl_ms: int | None = None,
) -> Command[None]:
    """Write many keys, all with the same TTL."""
    pairs = items.items() if isinstance(items, Mapping) else items
    ttl_value = _ttl(ttl_ms)
    request = pb.MSetRequest(
        entries=[
            pb.SetRequest(key=as_bytes(k, "key"), value=as_bytes(v, "value"), ttl_ms=ttl_value)
            for k, v in pairs
        ]
    )
    return Command("MSet", request, lambda r: None, True)


def mdelete(keys: Iterable[BytesLike]) -> Command[int]:
    """Remove many keys; how many existed."""
    request = pb.MDeleteRequest(keys=[as_bytes(k, "key") for k in keys])
    return Command("MDelete", request, lambda r: r.deleted, True)
