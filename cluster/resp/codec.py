"""Encoding replies in RESP2 and RESP3 (pure).

Replies are built as bytes as soon as a command is answered: a connection
joins them and writes once per read. Nested values (CLUSTER SLOTS, HELLO,
COMMAND INFO) go through :meth:`Codec.encode`, which picks the RESP3 type
when the connection speaks RESP3 and its RESP2 stand-in otherwise, as
redis-server does (a map becomes a flat array, a set an array, a boolean
an integer, a double a bulk string, a null ``$-1`` or ``*-1``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

OK = b"+OK\r\n"
PONG = b"+PONG\r\n"
QUEUED = b"+QUEUED\r\n"
ZERO = b":0\r\n"
ONE = b":1\r\n"
EMPTY_ARRAY = b"*0\r\n"
# Small integers are answered often (EXISTS, DEL, TTL -2): encode them once.
_INTS = {n: b":%d\r\n" % n for n in range(-2, 1024)}
# Bulk-string headers of the sizes most cached values have, made once: a run of
# GET replies is then list items that the connection's one join per read copies,
# about half the cost of formatting each reply.
_BULK_HEADERS = [b"$%d\r\n" % n for n in range(4096)]
_CRLF = b"\r\n"


class Simple(str):
    """A simple string (``+OK``) rather than a bulk string."""


class Push(list[Any]):
    """A RESP3 push (out-of-band data: invalidations); an array in RESP2."""


class Verbatim(str):
    """A RESP3 verbatim text reply (INFO, CLIENT INFO); a bulk string in RESP2."""


def bulk(value: bytes) -> bytes:
    """A bulk string."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def integer(n: int) -> bytes:
    """An integer reply."""
    cached = _INTS.get(n)
    return cached if cached is not None else b":%d\r\n" % n


def simple(text: str) -> bytes:
    """A simple string; CR and LF would end it early, so they become spaces."""
    return b"+" + _one_line(text) + b"\r\n"


def error(text: str) -> bytes:
    """An error reply; its first word is the error code (ERR, MOVED, WRONGTYPE ...)."""
    return b"-" + _one_line(text) + b"\r\n"


def _one_line(text: str) -> bytes:
    return text.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace")


class Codec:
    """Replies for one protocol version; a connection swaps codecs on HELLO."""

    __slots__ = ("null", "null_array", "version")

    def __init__(self, version: int) -> None:
        self.version = version
        resp3 = version >= 3
        self.null = b"_\r\n" if resp3 else b"$-1\r\n"
        self.null_array = b"_\r\n" if resp3 else b"*-1\r\n"

    def value(self, value: bytes | None) -> bytes:
        """A bulk string, or the null reply for a missing value."""
        if value is None:
            return self.null
        return b"$%d\r\n%s\r\n" % (len(value), value)

    def values(self, values: Iterable[bytes | None]) -> bytes:
        """An array of bulk strings and nulls (MGET)."""
        parts: list[bytes] = []
        count = self.add_values(parts, values)
        return b"*%d\r\n" % count + b"".join(parts)

    def add_values(self, out: list[bytes], values: Iterable[bytes | None]) -> int:
        """Append the replies to ``values`` (bulk strings, or null for a missing one) to ``out``.

        The pieces are left for the caller's join: a run of pipelined GETs
        costs list appends per value rather than a formatted copy each.
        Returns how many values there were.
        """
        null, headers, limit = self.null, _BULK_HEADERS, len(_BULK_HEADERS)
        count = 0
        for value in values:
            count += 1
            if value is None:
                out.append(null)
            elif len(value) < limit:
                out += (headers[len(value)], value, _CRLF)
            else:
                out.append(bulk(value))
        return count

    def encode(self, value: Any) -> bytes:
        """Encode a Python value, choosing RESP3 types when this codec speaks RESP3."""
        out: list[bytes] = []
        self._encode(value, out)
        return b"".join(out)

    def _encode(self, value: Any, out: list[bytes]) -> None:
        resp3 = self.version >= 3
        if value is None:
            out.append(self.null)
        elif isinstance(value, bool):
            out.append((b"#t\r\n" if value else b"#f\r\n") if resp3 else integer(int(value)))
        elif isinstance(value, int):
            out.append(integer(value))
        elif isinstance(value, float):
            text = repr(value).encode()
            out.append(b",%s\r\n" % text if resp3 else bulk(text))
        elif isinstance(value, bytes):
            out.append(bulk(value))
        elif isinstance(value, Simple):
            out.append(simple(value))
        elif isinstance(value, Verbatim):
            data = value.encode()
            out.append(b"=%d\r\ntxt:%s\r\n" % (len(data) + 4, data) if resp3 else bulk(data))
        elif isinstance(value, str):
            out.append(bulk(value.encode()))
        elif isinstance(value, Mapping):
            header = b"%" if resp3 else b"*"
            out.append(b"%s%d\r\n" % (header, len(value) * (1 if resp3 else 2)))
            for k, v in value.items():
                self._encode(k, out)
                self._encode(v, out)
        elif isinstance(value, set | frozenset):
            out.append(b"%s%d\r\n" % (b"~" if resp3 else b"*", len(value)))
            for item in sorted(value):
                self._encode(item, out)
        elif isinstance(value, list | tuple):
            header = b">" if resp3 and isinstance(value, Push) else b"*"
            out.append(b"%s%d\r\n" % (header, len(value)))
            for item in value:
                self._encode(item, out)
        else:
            raise TypeError(f"cannot encode {type(value).__name__} as RESP")


RESP2 = Codec(2)
RESP3 = Codec(3)
