"""Reply encoding: every value reads back through hiredis as the same value, in RESP2 and RESP3."""

from __future__ import annotations

from typing import Any

import hiredis
from hypothesis import given
from hypothesis import strategies as st

from slotcache_server.resp.codec import RESP2, RESP3, Push, Simple, Verbatim, error, integer

_leaves = st.one_of(st.binary(max_size=40), st.integers(-(2**63), 2**63 - 1), st.none())
_values = st.recursive(_leaves, lambda inner: st.lists(inner, max_size=5), max_leaves=30)


def _read(data: bytes) -> Any:
    reader = hiredis.Reader()
    reader.feed(data)
    value = reader.gets()
    assert reader.gets() is False  # exactly one reply, nothing left over
    return value


@given(_values)
def test_nested_values_read_back_alike_in_both_protocols(value: Any) -> None:
    assert _read(RESP2.encode(value)) == value
    assert _read(RESP3.encode(value)) == value


def test_resp3_types_and_their_resp2_stand_ins() -> None:
    mapping = {"a": 1, "b": [b"x"]}
    assert _read(RESP3.encode(mapping)) == {b"a": 1, b"b": [b"x"]}
    assert _read(RESP2.encode(mapping)) == [b"a", 1, b"b", [b"x"]]
    assert RESP3.encode(True) == b"#t\r\n" and RESP2.encode(True) == b":1\r\n"
    assert RESP3.encode(None) == b"_\r\n" and RESP2.encode(None) == b"$-1\r\n"
    assert (
        RESP3.encode(Push(["invalidate", [b"k"]]))
        == b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"
    )
    assert RESP2.encode(Push(["invalidate", None])).startswith(b"*2\r\n")
    assert RESP3.encode(Verbatim("hi")) == b"=6\r\ntxt:hi\r\n"
    assert RESP2.encode(Verbatim("hi")) == b"$2\r\nhi\r\n"
    assert RESP2.encode(Simple("OK")) == b"+OK\r\n"
    assert RESP3.encode({Simple("b"), Simple("a")}) == b"~2\r\n+a\r\n+b\r\n"


def test_errors_and_simple_strings_stay_on_one_line() -> None:
    assert error("ERR bad\r\nthing") == b"-ERR bad  thing\r\n"
    assert integer(5) == b":5\r\n" and integer(10**12) == b":1000000000000\r\n"
    assert RESP2.values([b"a", None]) == b"*2\r\n$1\r\na\r\n$-1\r\n"
    assert RESP3.values([None]) == b"*1\r\n_\r\n"
