"""The parser path of a RESP connection under arbitrary input, with no socket.

A connection is driven through its asyncio.Protocol callbacks with a
recording transport. Whatever arrives, in whatever pieces: nothing raises,
what is written reads back as complete RESP replies, and a stream that is
not RESP ends with exactly one protocol error, written last, and a close.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slotcache_server.config import ServerConfig
from slotcache_server.node import Node
from slotcache_server.resp.listener import RespListener
from tests.support.resp_wire import Transport, command, connect, feed, replies


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RespListener]:
    config = ServerConfig(data_dir=Path(tmp_path_factory.mktemp("fuzz")), metrics_port=0)
    yield Node(config).resp_listener()


# Commands whose replies depend only on the keys (not on the connection's id or age).
_words = st.sampled_from(
    [b"GET", b"SET", b"MGET", b"INCR", b"DEL", b"PING", b"EXISTS", b"TTL", b"COMMAND", b"X"]
)
_commands = st.tuples(_words, st.lists(st.binary(max_size=12), max_size=4)).map(
    lambda c: (c[0], *c[1])
)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=200), st.lists(st.integers(0, 400), max_size=6))
def test_arbitrary_bytes_never_break_the_connection(
    listener: RespListener, garbage: bytes, cuts: list[int]
) -> None:
    replies, closed = feed(listener, _split(garbage, cuts))
    protocol_errors = [
        i for i, r in enumerate(replies) if isinstance(r, tuple) and "Protocol error" in r[1]
    ]
    assert len(protocol_errors) <= 1
    if protocol_errors:
        assert closed and protocol_errors == [len(replies) - 1]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(_commands, min_size=1, max_size=12), st.lists(st.integers(0, 600), max_size=8))
def test_valid_commands_answer_alike_however_they_are_split(
    listener: RespListener, commands: list[tuple[bytes, ...]], cuts: list[int]
) -> None:
    stream = b"".join(command(*c) for c in commands)
    keyspace = listener.deps.executor.keyspace

    def run(chunks: list[bytes]) -> tuple[list[Any], bool]:
        for args in commands:  # every run starts from the same (empty) keys
            for arg in args[1:]:
                if arg:
                    keyspace.delete(arg)
        return feed(listener, chunks)

    whole, closed_whole = run([stream])
    pieces, closed_pieces = run(_split(stream, cuts))
    assert (whole, closed_whole) == (pieces, closed_pieces)
    if not closed_whole:
        assert len(whole) == len(commands)


def test_a_request_over_the_limit_closes_before_it_is_buffered(listener: RespListener) -> None:
    async def run() -> Transport:
        conn, transport = connect(listener)
        conn.data_received(b"*2\r\n$3\r\nGET\r\n$999999999999\r\n")
        chunk = b"x" * (1 << 20)
        for _ in range(70):
            if transport.closed:
                break
            conn.data_received(chunk)
        return transport

    transport = asyncio.run(run())
    assert transport.closed
    assert bytes(transport.written).startswith(b"-ERR Protocol error")


def test_replies_served_in_place_leave_together_at_the_end_of_the_loop_step(
    listener: RespListener,
) -> None:
    async def run() -> tuple[bytes, bytes]:
        conn, transport = connect(listener)
        conn.data_received(command(b"SET", b"k", b"v"))
        conn.data_received(command(b"GET", b"k"))
        during = bytes(transport.written)
        await asyncio.sleep(0)
        conn.connection_lost(None)
        return during, bytes(transport.written)

    during, after = asyncio.run(run())
    assert during == b""
    assert replies(after) == [b"OK", b"v"]
