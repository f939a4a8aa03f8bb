"""Parsing key commands into contract operations (pure)."""

from __future__ import annotations

import pytest

from slotcache.contract import OPS
from slotcache_server.keyspace import Condition
from slotcache_server.resp.errors import RespError
from slotcache_server.resp.keys import PARSERS, Call, SetOptions, Split, set_options


def _call(*args: bytes) -> Call:
    parsed = PARSERS[args[0]](list(args))
    assert isinstance(parsed, Call)
    return parsed


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ((), SetOptions()),
        ((b"NX",), SetOptions(condition=Condition.IF_ABSENT)),
        ((b"xx", b"get"), SetOptions(condition=Condition.IF_PRESENT, get=True)),
        ((b"EX", b"10"), SetOptions(ttl_ms=10_000)),
        ((b"px", b"7", b"NX"), SetOptions(ttl_ms=7, condition=Condition.IF_ABSENT)),
        ((b"KEEPTTL",), SetOptions(keep_ttl=True)),
    ],
)
def test_set_options(options: tuple[bytes, ...], expected: SetOptions) -> None:
    assert set_options([b"set", b"k", b"v", *options]) == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ((b"NX", b"XX"), "ERR syntax error"),
        ((b"EX", b"1", b"PX", b"1"), "ERR syntax error"),
        ((b"KEEPTTL", b"EX", b"1"), "ERR syntax error"),
        ((b"EX",), "ERR syntax error"),
        ((b"EX", b"0"), "ERR invalid expire time in 'set' command"),
        ((b"EX", b"+1"), "ERR value is not an integer or out of range"),
        ((b"EX", b"01x"), "ERR value is not an integer or out of range"),
    ],
)
def test_set_options_refused_as_redis_refuses_them(
    options: tuple[bytes, ...], message: str
) -> None:
    with pytest.raises(RespError) as raised:
        set_options([b"set", b"k", b"v", *options])
    assert raised.value.text == message


def test_commands_without_an_operation_map_onto_one() -> None:
    assert _call(b"decrby", b"k", b"5").request.delta == -5
    assert _call(b"incr", b"k").op is OPS["incr"]
    persist = _call(b"persist", b"k")
    assert persist.op is OPS["expire"] and persist.request.clear
    assert _call(b"expire", b"k", b"0").op is OPS["delete"]  # a past TTL deletes, as in Redis
    assert _call(b"pexpire", b"k", b"1500").request.ttl_ms == 1500
    assert _call(b"unlink", b"a", b"b").op is OPS["mdelete"]
    assert _call(b"set", b"k", b"v", b"GET").request.return_previous
    exists = PARSERS[b"exists"]([b"exists", b"a", b"b"])
    assert isinstance(exists, Split) and len(exists.calls) == 2


def test_decrby_of_the_smallest_integer_overflows() -> None:
    with pytest.raises(RespError, match="decrement would overflow"):
        _call(b"decrby", b"k", b"-9223372036854775808")


def test_mset_needs_pairs() -> None:
    with pytest.raises(RespError, match="wrong number of arguments for 'mset'"):
        _call(b"mset", b"a", b"1", b"b")
    assert [e.key for e in _call(b"mset", b"a", b"1", b"b", b"2").request.entries] == [b"a", b"b"]
