"""The RESP commands against one node, each compared with redis-server's own answer.

The same commands go to slotcache and to a redis-server of the same
machine through redis-py, and every reply (errors included, by their text)
must be the same: that is what "a Redis client works unchanged" means.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from slotcache.ctl.launcher import LOOPBACK
from tests.support.resp import redis_cli

# (command, arguments): run in this order on both servers, keys prefixed per run.
SCRIPT: list[tuple[str, ...]] = [
    ("SET", "k1", "v1"),
    ("GET", "k1"),
    ("GET", "missing"),
    ("SET", "k1", "v2", "NX"),
    ("SET", "k1", "v2", "XX"),
    ("SET", "k1", "v3", "XX", "GET"),
    ("SET", "fresh", "v", "NX", "GET"),
    ("GET", "fresh"),
    ("SET", "absent", "v", "XX"),
    ("SET", "k1", "v", "EX", "100"),
    ("TTL", "k1"),
    ("SET", "k1", "w", "KEEPTTL"),
    ("TTL", "k1"),
    ("SET", "k1", "v", "EX", "0"),
    ("SET", "k1", "v", "PX", "-5"),
    ("SET", "k1", "v", "EX", "abc"),
    ("SET", "k1", "v", "NX", "XX"),
    ("SET", "k1", "v", "EX", "10", "PX", "10"),
    ("SET", "k1", "v", "KEEPTTL", "EX", "10"),
    ("SET", "k1", "v", "BOGUS"),
    ("SET", "k1"),
    ("PERSIST", "k1"),
    ("PERSIST", "k1"),
    ("TTL", "k1"),
    ("TTL", "missing"),
    ("PTTL", "missing"),
    ("PTTL", "k1"),
    ("EXPIRE", "k1", "100"),
    ("TTL", "k1"),
    ("PEXPIRE", "k1", "50000"),
    ("TTL", "k1"),
    ("EXPIRE", "missing", "10"),
    ("EXPIRE", "k1", "x"),
    ("EXPIRE", "k1", "0"),
    ("EXISTS", "k1"),
    ("INCR", "c"),
    ("INCRBY", "c", "10"),
    ("DECR", "c"),
    ("DECRBY", "c", "3"),
    ("INCRBY", "c", "x"),
    ("INCRBY", "c", "1.5"),
    ("GET", "c"),
    ("SET", "s", "abc"),
    ("INCR", "s"),
    ("SET", "big", "9223372036854775807"),
    ("INCR", "big"),
    ("DECRBY", "c", "-9223372036854775808"),
    ("MSET", "a", "1", "b", "2", "c2", "3"),
    ("MGET", "a", "b", "zz", "c2"),
    ("MSET", "a"),
    ("MSET", "a", "1", "b"),
    ("EXISTS", "a", "b", "zz", "a"),
    ("DEL", "a", "b", "zz"),
    ("UNLINK", "c2"),
    ("DEL", "c2"),
    ("ECHO", "hello"),
    ("PING",),
    ("PING", "there"),
    ("SELECT", "0"),
    ("FOO", "bar", "baz"),
    ("CLIENT", "SETNAME", "me"),
    ("CLIENT", "GETNAME"),
    ("CLIENT", "SETNAME", "has space"),
    ("CLIENT", "NOSUCH"),
    ("GET",),
]
KEYED = {"GET", "SET", "TTL", "PTTL", "PERSIST", "EXPIRE", "PEXPIRE", "EXISTS", "INCR", "INCRBY"}
KEYED |= {"DECR", "DECRBY", "DEL", "UNLINK", "MGET"}


def _prefixed(command: tuple[str, ...], prefix: str) -> tuple[str, ...]:
    name, *args = command
    if name == "MSET":
        return (name, *[prefix + a if i % 2 == 0 else a for i, a in enumerate(args)])
    if name in KEYED and name != "SET":
        return (name, *[prefix + a if not a.lstrip("-").isdigit() else a for a in args])
    if name == "SET" and args:
        return (name, prefix + args[0], *args[1:])
    return command


def _outcome(r: redis.Redis, command: tuple[str, ...]) -> Any:
    try:
        return r.execute_command(*command)
    except (redis.ResponseError, redis.AuthenticationError) as exc:
        return (type(exc).__name__, str(exc))


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def pair(request: pytest.FixtureRequest, resp_port: int, redis_port: int) -> Iterator[Any]:
    protocol = request.param
    with (
        redis.Redis(LOOPBACK, resp_port, protocol=protocol, socket_timeout=5) as ours,
        redis.Redis(LOOPBACK, redis_port, protocol=protocol, socket_timeout=5) as theirs,
    ):
        yield ours, theirs, f"p{protocol}:"


def test_every_reply_matches_redis_server(pair: Any) -> None:
    ours, theirs, prefix = pair
    mismatches = []
    for command in SCRIPT:
        sent = _prefixed(command, prefix)
        mine, reference = _outcome(ours, sent), _outcome(theirs, sent)
        if mine != reference:
            mismatches.append((sent, mine, reference))
    assert mismatches == []


def test_pipelined_commands_answer_in_order(resp_port: int) -> None:
    with redis.Redis(LOOPBACK, resp_port) as r:
        pipe = r.pipeline(transaction=False)
        for i in range(500):
            pipe.set(f"pipe:{i}", str(i))
            pipe.incr(f"pipe:n:{i % 7}")
            pipe.get(f"pipe:{i}")
        replies = pipe.execute()
    assert replies[2::3] == [str(i).encode() for i in range(500)]
    assert replies[0::3] == [True] * 500


def test_values_up_to_the_limit_round_trip(resp_port: int) -> None:
    with redis.Redis(LOOPBACK, resp_port) as r:
        value = bytes(range(256)) * 4096  # 1 MiB, every byte value
        r.set("big:value", value)
        assert r.get("big:value") == value


def test_hello_reports_a_redis_7_4_server(resp_port: int) -> None:
    with redis.Redis(LOOPBACK, resp_port, protocol=3) as r:
        hello = r.execute_command("HELLO", "3")
    assert hello[b"server"] == b"redis" and hello[b"proto"] == 3
    assert hello[b"version"] >= b"7.4.0"


def test_info_has_the_fields_exporters_read(resp_port: int) -> None:
    with redis.Redis(LOOPBACK, resp_port) as r:
        r.set("info:k", "v")
        r.get("info:k")
        r.get("info:missing")
        info = r.info()
        assert r.dbsize() == info["db0"]["keys"]
    for field in ("keyspace_hits", "keyspace_misses", "used_memory", "connected_clients"):
        assert field in info
    assert info["keyspace_hits"] >= 1 and info["keyspace_misses"] >= 1
    assert info["role"] == "master" and info["redis_mode"] == "standalone"


def test_command_describes_key_positions(resp_port: int) -> None:
    with redis.Redis(LOOPBACK, resp_port) as r:
        table = r.command()
        assert r.command_count() == len(table)
        docs = r.execute_command("COMMAND DOCS", "get")
        keys = r.command_getkeys("MSET", "a", "1", "b", "2")
    assert table["mset"]["first_key_pos"] == 1 and table["mset"]["step_count"] == 2
    assert table["get"]["arity"] == 2
    assert b"get" in docs or "get" in docs
    assert [k.decode() if isinstance(k, bytes) else k for k in keys] == ["a", "b"]


def test_a_standalone_node_answers_cluster_slots_as_a_cluster_of_one(resp_port: int) -> None:
    with redis.Redis(LOOPBACK, resp_port) as r:
        slots = r.execute_command("CLUSTER SLOTS")
        myid = r.execute_command("CLUSTER MYID")
        keyslot = r.execute_command("CLUSTER KEYSLOT", "foo")
    assert keyslot == 12182  # Redis's own number for "foo"
    assert slots[0][0] == 0 and slots[0][1] == 16383
    assert int(slots[0][2][1]) == resp_port and slots[0][2][2] == myid


def test_auth_answers_as_redis_without_a_password(resp_port: int, redis_port: int) -> None:
    for args in (("AUTH", "secret"), ("AUTH", "default", "anything"), ("AUTH", "bob", "x")):
        assert redis_cli(resp_port, *args) == redis_cli(redis_port, *args)
