"""clusterctl get, set, del and ttl against a real three-primary cluster.

Every key is asked through one node, so most of them are served by
another: the command must find the owner the way the SDK does.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

import slotcache
from tests.support.ctl import Ctl, Result
from tests.support.processes import Cluster


@pytest.fixture
def run(ctl: Ctl, cluster3: Cluster) -> Callable[..., Result]:
    """``run("get", key)``: the command through the first node, in this process."""

    def through_first(command: str, *argv: str) -> Result:
        return ctl(command, cluster3.addresses[0], *argv)

    return through_first


def keys_on_every_node(prefix: bytes) -> list[str]:
    """One key per primary (the first node owns the first third of the slots, and so on)."""
    wanted = {0: None, 1: None, 2: None}
    i = 0
    while any(v is None for v in wanted.values()):
        key = f"{prefix.decode()}{i}"
        third = min(slotcache.key_slot(key.encode()) * 3 // 16384, 2)
        wanted[third] = wanted[third] or key
        i += 1
    return [k for k in wanted.values() if k is not None]


def test_set_then_get_on_every_node(run: Callable[..., Result], keys: Callable[..., bytes]) -> None:
    for key in keys_on_every_node(keys("greeting")):
        assert run("set", key, "hello").code == 0
        got = run("get", key)
        assert (got.code, got.out) == (0, "hello\n")


def test_get_shows_what_the_sdk_stored(
    run: Callable[..., Result], cluster3: Cluster, keys: Callable[..., bytes]
) -> None:
    user, raw = keys("user").decode(), keys("raw").decode()
    with slotcache.Client(cluster3.addresses[1]) as cache:
        cache.set(user, {"name": "Ada", "langs": ["en", "fr"]})
        cache.set(raw, b"\x00\xff")
    assert run("get", user).out == "{'name': 'Ada', 'langs': ['en', 'fr']}\n"
    assert run("get", raw).out == "b'\\x00\\xff'\n"
    data = json.loads(run("get", user, "--json").out)
    assert (data["found"], data["type"]) == (True, "object")
    assert data["value"] == {"name": "Ada", "langs": ["en", "fr"]}


def test_ttl_and_del(run: Callable[..., Result], keys: Callable[..., bytes]) -> None:
    key = keys("session").decode()
    assert run("set", key, "x", "--ttl-ms", "60000").code == 0
    ttl = json.loads(run("ttl", key, "--json").out)
    assert ttl["found"] and 55_000 < ttl["ttl_ms"] <= 60_000
    assert run("ttl", key).out.endswith(" ms\n")

    assert run("set", key, "y").code == 0  # a plain set clears the TTL
    assert run("ttl", key).out == "no TTL (the key does not expire)\n"
    assert json.loads(run("ttl", key, "--json").out)["ttl_ms"] is None

    assert (run("del", key).code, run("del", key).code) == (0, 1)


def test_a_missing_key_exits_1(run: Callable[..., Result], keys: Callable[..., bytes]) -> None:
    key = keys("never-written").decode()
    for command in ("get", "ttl", "del"):
        result = run(command, key)
        assert (result.code, result.out) == (1, ""), command
        assert f"not found: {key}" in result.err
    assert json.loads(run("get", key, "--json").out) == {"key": key, "found": False}


def test_a_key_over_the_limit_is_an_operation_error(run: Callable[..., Result]) -> None:
    result = run("set", "k" * (64 * 1024 + 1), "v")
    assert result.code == 1
    assert "InvalidArgument" in result.err and "limit is 65536" in result.err
