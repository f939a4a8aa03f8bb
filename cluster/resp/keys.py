"""Key commands as calls of the shared request path (pure).

Each Redis command is parsed into a :class:`Call`: a contract operation
(``slotcache.contract.OPS``), its protobuf request, and how to answer its
reply in RESP. The connection routes the call exactly as the gRPC service
routes the same operation, so it runs here, is forwarded or spread over
owners, or is refused alike. Commands with no operation of their own map
onto one: INCR/DECR and their BY forms onto ``incr``, EXPIRE/PEXPIRE with a
positive TTL and PERSIST onto ``expire`` (a TTL of 0 or less deletes the
key, as in Redis, so it maps onto ``delete``), TTL/PTTL onto ``ttl``,
DEL/UNLINK onto ``mdelete``. EXISTS with several keys is several ``exists``
calls whose answers are summed.

GET and SET also have a fast form for keys served here: the executor's
message-free methods, with the same checks, so the commonest commands skip
building protobuf messages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slotcache.contract import OPS, Op
from slotcache.v1 import cache_pb2 as pb

from ..executor import Executor
from ..keyspace import Condition, NotAnInteger
from ..keyspace.store import parse_int64
from .codec import OK, ONE, ZERO, Codec, integer
from .errors import RespError, not_an_integer, syntax_error, wrong_arity

Reply = Callable[[Any, Codec], bytes]
INT64_MIN = -(2**63)


@dataclass(frozen=True, slots=True)
class Call:
    """One operation of the request path, and how its reply is answered in RESP."""

    op: Op
    request: Any
    reply: Reply

    @property
    def keys(self) -> list[bytes]:
        """The keys, as the contract names them for routing."""
        return self.op.keys(self.request)


@dataclass(frozen=True, slots=True)
class Split:
    """Several single-key calls answered as one (EXISTS k1 k2 ...)."""

    calls: list[Call]
    combine: Callable[[list[Any], Codec], bytes]


def to_int(arg: bytes) -> int:
    """A signed 64-bit integer argument, as strict as Redis's parser."""
    try:
        return parse_int64(arg)
    except NotAnInteger:
        raise not_an_integer() from None


# ---- replies ---------------------------------------------------------------------------


def _reply_get(reply: pb.GetReply, codec: Codec) -> bytes:
    return codec.value(reply.value) if reply.found else codec.null


def _reply_set(reply: pb.SetReply, codec: Codec) -> bytes:
    return OK if reply.applied else codec.null


def _reply_set_get(reply: pb.SetReply, codec: Codec) -> bytes:
    return codec.value(reply.previous) if reply.HasField("previous") else codec.null


def _reply_flag(name: str) -> Reply:
    def reply(message: Any, codec: Codec) -> bytes:
        return ONE if getattr(message, name) else ZERO

    return reply


def _reply_deleted(reply: pb.MDeleteReply, codec: Codec) -> bytes:
    return integer(reply.deleted)


def _reply_ttl(unit_ms: int) -> Reply:
    def reply(message: pb.TtlReply, codec: Codec) -> bytes:
        if not message.found:
            return integer(-2)
        if not message.has_ttl:
            return integer(-1)
        # Redis rounds TTL's seconds to the nearest.
        return integer((message.ttl_ms + unit_ms // 2) // unit_ms)

    return reply


def _reply_incr(reply: pb.IncrReply, codec: Codec) -> bytes:
    return integer(reply.value)


def _reply_mget(reply: pb.MGetReply, codec: Codec) -> bytes:
    return codec.values(r.value if r.found else None for r in reply.results)


def _reply_ok(reply: Any, codec: Codec) -> bytes:
    return OK


def _sum_exists(replies: list[Any], codec: Codec) -> bytes:
    return integer(sum(1 for r in replies if r.exists))


# ---- parsers ---------------------------------------------------------------------------

_GET, _SET, _DELETE, _EXISTS = OPS["get"], OPS["set"], OPS["delete"], OPS["exists"]
_EXPIRE, _TTL, _INCR = OPS["expire"], OPS["ttl"], OPS["incr"]
_MGET, _MSET, _MDELETE = OPS["mget"], OPS["mset"], OPS["mdelete"]
_DELETED_FLAG = _reply_flag("deleted")
_APPLIED_FLAG = _reply_flag("applied")
_EXISTS_FLAG = _reply_flag("exists")


@dataclass(frozen=True, slots=True)
class SetOptions:
    """SET's options, parsed."""

    ttl_ms: int = 0
    condition: Condition = Condition.ALWAYS
    keep_ttl: bool = False
    get: bool = False


_PLAIN_SET = SetOptions()
_TTL_UNITS = {b"EX": 1000, b"PX": 1}


def set_options(args: list[bytes]) -> SetOptions:
    """Parse ``SET key value [NX|XX] [GET] [EX s|PX ms|KEEPTTL]`` as Redis does."""
    if len(args) == 3:
        return _PLAIN_SET
    ttl_ms, condition, keep_ttl, get, expiry = 0, Condition.ALWAYS, False, False, False
    i = 3
    while i < len(args):
        word = args[i].upper()
        if word == b"NX" and condition is Condition.ALWAYS:
            condition = Condition.IF_ABSENT
        elif word == b"XX" and condition is Condition.ALWAYS:
            condition = Condition.IF_PRESENT
        elif word == b"GET":
            get = True
        elif word == b"KEEPTTL" and not expiry:
            keep_ttl = expiry = True
        elif word in _TTL_UNITS and not expiry and i + 1 < len(args):
            i += 1
            amount = to_int(args[i])
            if amount <= 0 or amount > 10**15 // _TTL_UNITS[word]:
                raise RespError("ERR invalid expire time in 'set' command")
            ttl_ms, expiry = amount * _TTL_UNITS[word], True
        else:
            raise syntax_error()
        i += 1
    return SetOptions(ttl_ms, condition, keep_ttl, get)


def _set(args: list[bytes]) -> Call:
    opts = set_options(args)
    request = pb.SetRequest(
        key=args[1],
        value=args[2],
        ttl_ms=opts.ttl_ms,
        condition=pb.SetCondition.ValueType(opts.condition.value),
        keep_ttl=opts.keep_ttl,
        return_previous=opts.get,
    )
    return Call(_SET, request, _reply_set_get if opts.get else _reply_set)


def _expire(unit_ms: int) -> Callable[[list[bytes]], Call]:
    def parse(args: list[bytes]) -> Call:
        if len(args) > 3:
            word = args[3].decode("utf-8", "replace")
            raise RespError(f"ERR EXPIRE option {word!r} is not supported by slotcache")
        amount = to_int(args[2])
        if amount <= 0:
            # Redis deletes a key given a TTL that has already passed.
            return Call(_DELETE, pb.DeleteRequest(key=args[1]), _DELETED_FLAG)
        if amount > 10**15 // unit_ms:
            raise RespError("ERR invalid expire time in 'expire' command")
        return Call(_EXPIRE, pb.ExpireRequest(key=args[1], ttl_ms=amount * unit_ms), _APPLIED_FLAG)

    return parse


def _incr(sign: int, by: bool) -> Callable[[list[bytes]], Call]:
    def parse(args: list[bytes]) -> Call:
        delta = to_int(args[2]) if by else 1
        if sign < 0:
            if delta == INT64_MIN:
                raise RespError("ERR decrement would overflow")
            delta = -delta
        return Call(_INCR, pb.IncrRequest(key=args[1], delta=delta), _reply_incr)

    return parse


def _mset(args: list[bytes]) -> Call:
    if len(args) % 2 == 0:
        raise wrong_arity("mset")
    entries = [pb.SetRequest(key=args[i], value=args[i + 1]) for i in range(1, len(args), 2)]
    return Call(_MSET, pb.MSetRequest(entries=entries), _reply_ok)


def _exists(args: list[bytes]) -> Call | Split:
    calls = [Call(_EXISTS, pb.ExistsRequest(key=k), _EXISTS_FLAG) for k in args[1:]]
    if len(calls) == 1:
        return calls[0]
    return Split(calls, _sum_exists)


def _delete(args: list[bytes]) -> Call:
    return Call(_MDELETE, pb.MDeleteRequest(keys=args[1:]), _reply_deleted)


PARSERS: dict[bytes, Callable[[list[bytes]], Call | Split]] = {
    b"get": lambda a: Call(_GET, pb.GetRequest(key=a[1]), _reply_get),
    b"set": _set,
    b"del": _delete,
    b"unlink": _delete,
    b"exists": _exists,
    b"expire": _expire(1000),
    b"pexpire": _expire(1),
    b"ttl": lambda a: Call(_TTL, pb.TtlRequest(key=a[1]), _reply_ttl(1000)),
    b"pttl": lambda a: Call(_TTL, pb.TtlRequest(key=a[1]), _reply_ttl(1)),
    b"persist": lambda a: Call(_EXPIRE, pb.ExpireRequest(key=a[1], clear=True), _APPLIED_FLAG),
    b"incr": _incr(1, False),
    b"incrby": _incr(1, True),
    b"decr": _incr(-1, False),
    b"decrby": _incr(-1, True),
    b"mget": lambda a: Call(_MGET, pb.MGetRequest(keys=a[1:]), _reply_mget),
    b"mset": _mset,
}


# ---- fast forms ------------------------------------------------------------------------


def fast_get(executor: Executor, args: list[bytes], codec: Codec) -> bytes | None:
    """GET of a key served here, without messages."""
    value = executor.get_value(args[1])
    if value is None:
        return codec.null
    return b"$%d\r\n%s\r\n" % (len(value), value)


def fast_set(executor: Executor, args: list[bytes], codec: Codec) -> bytes | None:
    """SET of a key served here without messages; None when it needs the full path (GET)."""
    opts = set_options(args)
    if opts.get:
        return None
    applied = executor.set_value(args[1], args[2], opts.ttl_ms, opts.condition, opts.keep_ttl)
    return OK if applied else codec.null


FAST: dict[bytes, Callable[[Executor, list[bytes], Codec], bytes | None]] = {
    b"get": fast_get,
    b"set": fast_set,
}
