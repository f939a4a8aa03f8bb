"""redis-py's own client-side cache (RESP3 CLIENT TRACKING) against slotcache.

The cache must never serve a value older than the last write another
client had acknowledged: the node pushes the invalidation to the reader's
connection before it acknowledges the write, so the reader sees it before
its next command.
"""

from __future__ import annotations

import redis
from redis.cache import CacheConfig

from slotcache.ctl.launcher import LOOPBACK


def _cached(port: int) -> redis.Redis:
    return redis.Redis(LOOPBACK, port, protocol=3, cache_config=CacheConfig(), socket_timeout=5)


def test_a_cached_value_is_never_stale_after_another_clients_write(resp_port: int) -> None:
    with _cached(resp_port) as reader, redis.Redis(LOOPBACK, resp_port) as writer:
        stale = []
        for i in range(300):
            key = f"csc:{i % 5}"
            writer.set(key, str(i))
            first = reader.get(key)
            again = reader.get(key)  # from the near cache, if nothing changed
            if first != str(i).encode() or again != first:
                stale.append((i, first, again))
        writer.delete("csc:0")
        assert reader.get("csc:0") is None
        writer.set("csc:1", "x", px=60_000)
        assert reader.get("csc:1") == b"x"
        writer.incr("csc:n")
        assert reader.get("csc:n") == b"1"
        writer.incr("csc:n")
        assert reader.get("csc:n") == b"2"
    assert stale == []


def test_the_cache_answers_repeated_reads_without_the_server(resp_port: int) -> None:
    with _cached(resp_port) as reader, redis.Redis(LOOPBACK, resp_port) as plain:
        plain.set("csc:hot", "v")
        reader.get("csc:hot")
        hits = plain.info("stats")["keyspace_hits"]
        for _ in range(50):
            assert reader.get("csc:hot") == b"v"
        assert plain.info("stats")["keyspace_hits"] == hits


def test_tracking_needs_resp3_and_refuses_unsupported_options(resp_port: int) -> None:
    with redis.Redis(LOOPBACK, resp_port, protocol=2) as resp2:
        try:
            resp2.execute_command("CLIENT", "TRACKING", "ON")
            raise AssertionError("RESP2 tracking without REDIRECT was accepted")
        except redis.ResponseError as exc:
            assert "RESP3" in str(exc)
    with redis.Redis(LOOPBACK, resp_port, protocol=3) as resp3:
        try:
            resp3.execute_command("CLIENT", "TRACKING", "ON", "OPTIN")
            raise AssertionError("OPTIN was accepted")
        except redis.ResponseError as exc:
            assert "OPTIN" in str(exc)
        assert resp3.execute_command("CLIENT", "TRACKING", "ON", "BCAST")
