"""A node restarted with ``--snapshot`` comes back with its keys and their TTLs.

Real processes: the data goes through SIGTERM, the snapshot file and a new
process. A damaged file is refused and the node serves, empty.
"""

from __future__ import annotations

import time

import grpc

import slotcache
from slotcache.v1 import admin_pb2, admin_pb2_grpc
from slotcache_server.persistence.node_snapshots import snapshot_path
from tests.support.processes import ServerFactory

KEYS = 20_000
TTL_MS = 600_000


def node_stats(address: str) -> dict[str, int]:
    with grpc.insecure_channel(address) as channel:
        reply = admin_pb2_grpc.AdminStub(channel).Info(admin_pb2.InfoRequest(), timeout=5)
    return dict(reply.stats)


def fill(client: slotcache.Client, n: int) -> dict[bytes, bytes]:
    data = {b"key:%d" % i: b"%0100d" % i for i in range(n)}
    items = list(data.items())
    for at in range(0, n, 1000):
        batch = items[at : at + 1000]
        # Every other batch expires in ten minutes; the rest never does.
        client.mset(batch, ttl_ms=TTL_MS if at // 1000 % 2 else None)
    return data


def test_a_restarted_node_serves_its_keys_with_their_ttls(servers: ServerFactory) -> None:
    server = servers("--snapshot", "on-shutdown")
    with slotcache.Client(server.address) as client:
        data = fill(client, KEYS)
        ttl_before = client.ttl(b"key:1000")
    assert server.stop() == 0
    assert snapshot_path(server.data_dir).exists()
    began = time.monotonic()
    server.start()
    restart_s = time.monotonic() - began
    stats = node_stats(server.address)
    with slotcache.Client(server.address) as client:
        keys = list(data)
        values = [v for at in range(0, KEYS, 1000) for v in client.mget(keys[at : at + 1000])]
        assert values == list(data.values())
        ttl_after = client.ttl(b"key:1000")
        assert client.ttl(b"key:0") == -1  # no TTL
    # Deadlines are absolute: the TTL kept counting while the node was down.
    assert 0 < ttl_after <= ttl_before
    assert stats["keys"] == KEYS and stats["keys.with_ttl"] == KEYS // 2
    assert stats["snapshot.loaded_keys"] == KEYS
    load_ms = stats["snapshot.last_load_ms"]
    print(f"{KEYS} keys: restart to SERVING {restart_s:.2f}s, load {load_ms} ms")


def test_a_damaged_snapshot_is_refused_and_the_node_starts_empty(
    servers: ServerFactory,
) -> None:
    server = servers("--snapshot", "on-shutdown")
    with slotcache.Client(server.address) as client:
        fill(client, 2000)
    server.stop()
    path = snapshot_path(server.data_dir)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    server.start()
    assert node_stats(server.address)["keys"] == 0
    assert "checksum mismatch" in server.log() and "starting empty" in server.log()


def test_without_the_flag_a_restart_starts_empty(servers: ServerFactory) -> None:
    server = servers()
    with slotcache.Client(server.address) as client:
        fill(client, 1000)
    server.stop()
    server.start()
    assert node_stats(server.address)["keys"] == 0
    assert not snapshot_path(server.data_dir).exists()


def test_interval_snapshots_do_not_stall_the_loop(servers: ServerFactory) -> None:
    """Saves while serving are sliced: the loop's own stalls stay under 50 ms."""
    server = servers("--snapshot", "interval:0.3")
    with slotcache.Client(server.address) as client:
        fill(client, 100_000)
        saves = node_stats(server.address)["snapshot.saves"]
        deadline = time.monotonic() + 30
        while node_stats(server.address)["snapshot.saves"] < saves + 2:
            assert time.monotonic() < deadline, "no interval snapshot was written"
            client.set(b"busy", b"1")
            time.sleep(0.05)
    stats = node_stats(server.address)
    # CPU the loop's own thread spent in one stall (the wall-clock lag also
    # counts time a busy machine did not run the process).
    assert stats["loop.lag_cpu_max_ms"] < 50, stats
    assert stats["snapshot.last_save_ms"] > 0
