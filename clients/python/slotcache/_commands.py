"""Sans-I/O command definitions: each builds a request and knows how to read its reply.

Both clients, and explicit pipelines, run the very same Command objects; only
the way the request reaches the server differs (a message on the node's
Pipeline stream, or a unary call). Input checks that need no server (types,
obvious misuse) happen here so both clients fail the same way, before any
I/O. Values go through the client's :class:`~slotcache._values.Values`
(codec, optional encryption) on the way in and out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from slotcache._values import MARK, Values
from slotcache.v1 import cache_pb2 as pb

T = TypeVar("T")
BytesLike = bytes | bytearray | memoryview
#: A key: bytes-like, or str (encoded as UTF-8).
Key = str | bytes | bytearray | memoryview

NO_TTL = -1
MISSING = -2


@dataclass(slots=True)
class Command(Generic[T]):
    """One Cache operation: its RPC, its request, how to read the reply, and how it may travel.

    ``idempotent``: running it twice equals running it once, so a retry after
    an ambiguous failure is safe. ``replica``: a read the caller allows a
    replica to serve (unary only: the Pipeline stream is served by primaries).
    ``unary``: must not share the node's Pipeline stream; a write that waits
    for replicas (``min_replicas``) would hold every operation queued behind
    it on that stream. ``keys``: the keys in request order, when the builder
    has them at hand (saves reading them back out of the request).
    """

    rpc: str
    request: Any
    parse: Callable[[Any], T]
    idempotent: bool
    replica: bool = False
    unary: bool = False
    keys: list[bytes] | None = None


def as_key(key: object) -> bytes:
    """A key as bytes: str is encoded as UTF-8, bytes-like is copied, anything else refused."""
    if type(key) is bytes:
        return key
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, bytearray | memoryview):
        return bytes(key)
    raise TypeError(f"key must be bytes or str, not {type(key).__name__}")


def _int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    return value


def _ttl(ttl_ms: int | None) -> int:
    return 0 if ttl_ms is None else _int(ttl_ms, "ttl_ms")


def _min_replicas(value: int | None) -> int | None:
    if value is None:
        return None
    value = _int(value, "min_replicas")
    if not 0 <= value < 2**32:
        raise ValueError("min_replicas must be between 0 and 2**32-1")
    return value


def _remaining(reply: pb.TtlReply) -> int:
    if not reply.found:
        return MISSING
    return reply.ttl_ms if reply.has_ttl else NO_TTL


class Commands:
    """Builds commands for one client: its value layer, and whether reads go to replicas.

    ``replica_ok=None`` on a read means "the client's default"
    (``read_from_replicas``).
    """

    __slots__ = ("read_from_replicas", "values")

    def __init__(self, values: Values, read_from_replicas: bool = False) -> None:
        self.values = values
        self.read_from_replicas = read_from_replicas

    def _replica(self, replica_ok: bool | None) -> bool:
        return self.read_from_replicas if replica_ok is None else bool(replica_ok)

    def get(self, key: Key, replica_ok: bool | None = None) -> Command[Any]:
        """Read a key: its value, or None."""
        name = as_key(key)
        values = self.values
        if values.passthrough:

            def parse(reply: pb.GetReply) -> Any:
                if not reply.found:
                    return None
                value = reply.value
                return value if value[:1] != MARK else values.load(name, value)

        else:

            def parse(reply: pb.GetReply) -> Any:
                return values.load(name, reply.value) if reply.found else None

        replica = self._replica(replica_ok)
        return Command("Get", pb.GetRequest(key=name), parse, True, replica, False, [name])

    def get_raw(self, key: bytes, replica_ok: bool | None = None) -> Command[bytes | None]:
        """Read a key's stored bytes as they are (get_or_set decodes them itself)."""
        return Command(
            "Get",
            pb.GetRequest(key=key),
            lambda reply: reply.value if reply.found else None,
            True,
            self._replica(replica_ok),
        )

    def set(
        self,
        key: Key,
        value: Any,
        ttl_ms: int | None = None,
        if_absent: bool = False,
        if_present: bool = False,
        keep_ttl: bool = False,
        min_replicas: int | None = None,
    ) -> Command[bool]:
        """Write a key; the result says whether the write was applied."""
        name = as_key(key)
        return self.set_stored(
            name,
            self.values.dump(name, value),
            ttl_ms,
            if_absent,
            if_present,
            keep_ttl,
            min_replicas,
        )

    def set_stored(
        self,
        name: bytes,
        stored: bytes,
        ttl_ms: int | None = None,
        if_absent: bool = False,
        if_present: bool = False,
        keep_ttl: bool = False,
        min_replicas: int | None = None,
    ) -> Command[bool]:
        """Write bytes already laid out by the value layer (get_or_set's entries)."""
        if if_absent and if_present:
            raise ValueError("if_absent and if_present cannot both be set")
        condition = (
            pb.SET_CONDITION_IF_ABSENT
            if if_absent
            else pb.SET_CONDITION_IF_PRESENT
            if if_present
            else pb.SET_CONDITION_ALWAYS
        )
        # Only fields that differ from their defaults: each keyword costs time in upb.
        request = pb.SetRequest(key=name, value=stored)
        ttl_value = _ttl(ttl_ms)
        if ttl_value:
            request.ttl_ms = ttl_value
        if condition:
            request.condition = condition
        if keep_ttl:
            request.keep_ttl = True
        replicas = _min_replicas(min_replicas)
        if replicas is not None:
            request.min_replicas = replicas
        # A conditional write that is retried may see its own first attempt.
        idempotent = condition == pb.SET_CONDITION_ALWAYS
        return Command("Set", request, _applied, idempotent, False, replicas is not None, [name])

    def delete(self, key: Key, min_replicas: int | None = None) -> Command[bool]:
        """Remove a key; True if it existed."""
        request = pb.DeleteRequest(key=as_key(key))
        return self._write("Delete", request, lambda r: r.deleted, True, min_replicas)

    def exists(self, key: Key, replica_ok: bool | None = None) -> Command[bool]:
        """Whether a key is held."""
        request = pb.ExistsRequest(key=as_key(key))
        return Command("Exists", request, lambda r: r.exists, True, self._replica(replica_ok))

    def expire(
        self, key: Key, ttl_ms: int | None, min_replicas: int | None = None
    ) -> Command[bool]:
        """Set a TTL, or clear it with ``ttl_ms=None``; False if the key is missing."""
        if ttl_ms is None:
            request = pb.ExpireRequest(key=as_key(key), clear=True)
        else:
            request = pb.ExpireRequest(key=as_key(key), ttl_ms=_ttl(ttl_ms))
        return self._write("Expire", request, _applied, True, min_replicas)

    def ttl(self, key: Key, replica_ok: bool | None = None) -> Command[int]:
        """Remaining TTL in ms; -1 when the key has none, -2 when it is missing (as Redis PTTL)."""
        request = pb.TtlRequest(key=as_key(key))
        return Command("Ttl", request, _remaining, True, self._replica(replica_ok))

    def incr(self, key: Key, delta: int = 1, min_replicas: int | None = None) -> Command[int]:
        """Add ``delta`` to an integer value; a retry could apply it twice, so none is made."""
        request = pb.IncrRequest(key=as_key(key), delta=_int(delta, "delta"))
        return self._write("Incr", request, lambda r: r.value, False, min_replicas)

    def mget(self, keys: Iterable[Key], replica_ok: bool | None = None) -> Command[list[Any]]:
        """Read many keys; values (or None) in the order of ``keys``."""
        if isinstance(keys, str | bytes | bytearray | memoryview):
            raise TypeError("keys must be an iterable of keys, not a single key")
        names = [as_key(k) for k in keys]
        values = self.values
        load = values.load
        if values.passthrough:

            def parse(reply: pb.MGetReply) -> list[Any]:
                return [
                    ((v if (v := r.value)[:1] != MARK else load(k, v)) if r.found else None)
                    for k, r in zip(names, reply.results, strict=True)
                ]

        else:

            def parse(reply: pb.MGetReply) -> list[Any]:
                return [
                    load(k, r.value) if r.found else None
                    for k, r in zip(names, reply.results, strict=True)
                ]

        request = pb.MGetRequest(keys=names)
        return Command("MGet", request, parse, True, self._replica(replica_ok), False, names)

    def mset(
        self,
        items: Mapping[Any, Any] | Iterable[tuple[Any, Any]],
        ttl_ms: int | None = None,
        min_replicas: int | None = None,
    ) -> Command[None]:
        """Write many keys, all with the same TTL."""
        pairs = items.items() if isinstance(items, Mapping) else items
        ttl_value = _ttl(ttl_ms)
        dump = self.values.dump
        fast = self.values.passthrough and self.values.codec is not None
        request = pb.MSetRequest()
        # entries.add(...) builds in place: constructing SetRequests and copying them
        # in costs several times more (and so does passing ttl_ms=0).
        add = request.entries.add
        names = []
        for k, v in pairs:
            name = k if type(k) is bytes else as_key(k)
            names.append(name)
            if not (fast and type(v) is bytes and v[:1] != MARK):
                v = dump(name, v)
            if ttl_value:
                add(key=name, value=v, ttl_ms=ttl_value)
            else:
                add(key=name, value=v)
        return self._write("MSet", request, _none, True, min_replicas, names)

    def mdelete(self, keys: Iterable[Key], min_replicas: int | None = None) -> Command[int]:
        """Remove many keys; how many existed."""
        if isinstance(keys, str | bytes | bytearray | memoryview):
            raise TypeError("keys must be an iterable of keys, not a single key")
        names = [as_key(k) for k in keys]
        request = pb.MDeleteRequest(keys=names)
        return self._write("MDelete", request, lambda r: r.deleted, True, min_replicas, names)

    @staticmethod
    def _write(
        rpc: str,
        request: Any,
        parse: Callable[[Any], T],
        idempotent: bool,
        min_replicas: int | None,
        keys: list[bytes] | None = None,
    ) -> Command[T]:
        replicas = _min_replicas(min_replicas)
        if replicas is not None:
            request.min_replicas = replicas
        return Command(rpc, request, parse, idempotent, False, replicas is not None, keys)


def _applied(reply: Any) -> bool:
    return bool(reply.applied)


def _none(reply: Any) -> None:
    return None


# Bytes-only builders, for tests and tools that want no codec.
_RAW = Commands(Values(None))
get = _RAW.get
set_ = _RAW.set
delete = _RAW.delete
exists = _RAW.exists
expire = _RAW.expire
ttl = _RAW.ttl
incr = _RAW.incr
mget = _RAW.mget
mset = _RAW.mset
mdelete = _RAW.mdelete
