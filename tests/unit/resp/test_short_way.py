"""Plain GETs and SETs served in runs: order, errors inside a run, and what is counted.

A pipelined read of GETs and SETs is served a run at a time (one keyspace
call per run of GETs or of SETs). These tests pin what a client sees:
replies in request order, a later GET seeing an earlier SET of the same
read, a bad key or value failing alone, and the counters moving by exactly
the commands that succeeded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from slotcache_server.config import ServerConfig
from slotcache_server.node import Node
from slotcache_server.observability.calls import OK, RESP
from slotcache_server.resp.listener import RespListener
from tests.support.resp_wire import command, feed

MAX_KEY = 64
MAX_VALUE = 128


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[RespListener]:
    config = ServerConfig(
        data_dir=tmp_path, metrics_port=0, max_key_bytes=MAX_KEY, max_value_bytes=MAX_VALUE
    )
    yield Node(config).resp_listener()


def _ok_count(listener: RespListener, method: str) -> int:
    return sum(listener.deps.recorder.latency.get((method, OK, RESP), []))


def test_a_pipelined_read_answers_in_order_and_sees_its_own_writes(
    listener: RespListener,
) -> None:
    stream = b"".join(
        [
            command(b"GET", b"a"),
            command(b"SET", b"a", b"1"),
            command(b"SET", b"b", b"2"),
            command(b"GET", b"a"),
            command(b"GET", b"b"),
            command(b"PING"),
            command(b"SET", b"a", b"3"),
            command(b"GET", b"a"),
        ]
    )
    replies, closed = feed(listener, [stream])
    assert replies == [None, b"OK", b"OK", b"1", b"2", b"PONG", b"OK", b"3"]
    assert not closed
    assert (_ok_count(listener, "Get"), _ok_count(listener, "Set")) == (4, 3)


def test_a_bad_key_or_value_fails_alone_inside_a_run(listener: RespListener) -> None:
    long_key, long_value = b"k" * (MAX_KEY + 1), b"v" * (MAX_VALUE + 1)
    stream = b"".join(
        [
            command(b"SET", b"x", b"1"),
            command(b"SET", long_key, b"1"),
            command(b"SET", b"y", long_value),
            command(b"SET", b"z", b"3"),
            command(b"GET", b"x"),
            command(b"GET", b""),
            command(b"GET", b"z"),
            command(b"GET", b"y"),
        ]
    )
    replies, _ = feed(listener, [stream])
    assert replies[0] == b"OK" and replies[3] == b"OK"
    assert replies[1][0] == "error" and "limit" in replies[1][1]
    assert replies[2][0] == "error" and "limit" in replies[2][1]
    assert replies[4:] == [b"1", ("error", replies[5][1]), b"3", None]
    assert "empty" in replies[5][1]
    assert (_ok_count(listener, "Get"), _ok_count(listener, "Set")) == (3, 2)
    errors = listener.deps.recorder.errors
    assert errors[("Set", "INVALID_ARGUMENT", "", RESP)] == 2
    assert errors[("Get", "INVALID_ARGUMENT", "", RESP)] == 1


def test_keyspace_hits_and_misses_move_by_the_gets_of_a_run(listener: RespListener) -> None:
    keyspace = listener.deps.executor.keyspace
    feed(listener, [command(b"SET", b"h", b"1")])
    before = (keyspace.stats.hits, keyspace.stats.misses)
    feed(listener, [command(b"GET", b"h") * 5 + command(b"GET", b"m") * 3])
    assert (keyspace.stats.hits - before[0], keyspace.stats.misses - before[1]) == (5, 3)
