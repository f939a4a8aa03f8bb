"""The snapshot file: a round trip keeps every key and TTL, and bad files are refused whole."""

from __future__ import annotations

import asyncio
import logging
import struct
from pathlib import Path

import pytest

from slotcache_server.keyspace import Keyspace
from slotcache_server.persistence import format as fmt
from slotcache_server.persistence import snapshot_file
from slotcache_server.persistence.node_snapshots import NodeSnapshots, snapshot_path
from slotcache_server.persistence.policy import SnapshotPolicy

NOW = 1_700_000_000_000


class Clock:
    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def meta(keyspace: Keyspace, final: bool = True) -> fmt.SnapshotMeta:
    return fmt.SnapshotMeta("ab" * 20, 42, keyspace.key_count, final, NOW)


def filled(clock: Clock, n: int = 300) -> Keyspace:
    ks = Keyspace(clock_ms=clock)
    for i in range(n):
        ks.set_with_deadline(b"k%d" % i, b"v%d" % i * (i % 7), NOW + 60_000 if i % 3 == 0 else 0)
    ks.set(b"empty-value", b"")
    return ks


def contents(ks: Keyspace) -> dict[bytes, tuple[bytes | None, int]]:
    keys = [k for slot in ks.nonempty_slots() for k in ks.slot_keys(slot)]
    return {k: (ks.get(k), ks.deadline(k)) for k in keys}


def save(ks: Keyspace, path: Path) -> fmt.SnapshotMeta:
    return asyncio.run(snapshot_file.write(ks, path, lambda: meta(ks)))


def test_round_trip_keeps_values_and_absolute_deadlines(tmp_path: Path) -> None:
    clock = Clock()
    ks = filled(clock)
    path = tmp_path / "s.scs"
    written = save(ks, path)
    snapshot = snapshot_file.read(path)
    assert snapshot is not None and snapshot.meta == written
    clock.now += 30_000  # the restart took 30 s: TTLs keep counting
    loaded = Keyspace(clock_ms=clock)
    assert snapshot_file.install(loaded, snapshot) == ks.key_count
    assert contents(loaded) == contents(ks)
    assert loaded.pttl(b"k0") == 30_000
    assert loaded.used_memory == ks.used_memory
    assert not path.with_name(path.name + ".tmp").exists()


def test_keys_expired_by_load_time_are_dropped(tmp_path: Path) -> None:
    clock = Clock()
    ks = filled(clock)
    path = tmp_path / "s.scs"
    save(ks, path)
    clock.now += 61_000
    loaded = Keyspace(clock_ms=clock)
    snapshot = snapshot_file.read(path)
    assert snapshot is not None
    snapshot_file.install(loaded, snapshot)
    assert loaded.ttl_key_count() == 0
    assert loaded.key_count == ks.key_count - ks.ttl_key_count()


def test_writes_during_the_copy_end_up_in_the_file(tmp_path: Path) -> None:
    """A save that yields between slices records later changes to slots already copied.

    ``slice_s=0`` yields after every slot: a fast machine copies 3000 keys
    within one default slice and the writer would never get a turn.
    """
    clock = Clock()
    ks = filled(clock, 3000)
    path = tmp_path / "s.scs"
    at_end: list[dict[bytes, tuple[bytes | None, int]]] = []

    def describe() -> fmt.SnapshotMeta:
        at_end.append(contents(ks))  # the file holds the keyspace as it is now
        return meta(ks)

    async def save_while_writing() -> fmt.SnapshotMeta:
        task = asyncio.create_task(
            snapshot_file.write(ks, path, describe, lambda _: 0.0, slice_s=0.0)
        )
        i = 0
        while not task.done():
            ks.set(b"k%d" % (i % 3000), b"new%d" % i)
            ks.delete(b"k%d" % ((i + 1500) % 3000))
            i += 1
            await asyncio.sleep(0)
        return await task

    asyncio.run(save_while_writing())
    loaded = Keyspace(clock_ms=clock)
    snapshot = snapshot_file.read(path)
    assert snapshot is not None
    snapshot_file.install(loaded, snapshot)
    assert snapshot.ops, "the test wrote nothing while the copy ran"
    assert contents(loaded) == at_end[0]


def corrupt_byte(data: bytearray) -> bytearray:
    data[len(data) // 2] ^= 0xFF
    return data


def truncate(data: bytearray) -> bytearray:
    return data[: len(data) - 7]


def without_end(data: bytearray) -> bytearray:
    end = data.rindex(bytes([fmt.END]))
    return data[:end]


def wrong_version(data: bytearray) -> bytearray:
    data[: fmt.HEADER.size] = fmt.HEADER.pack(fmt.MAGIC, fmt.VERSION + 1)
    return data


def not_a_snapshot(data: bytearray) -> bytearray:
    return bytearray(b"REDIS0011" + bytes(data[9:]))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (corrupt_byte, "checksum mismatch"),
        (truncate, "truncated"),
        (without_end, "truncated"),
        (wrong_version, "version 2; this node reads 1"),
        (not_a_snapshot, "bad magic"),
    ],
)
def test_a_bad_file_is_refused_and_the_node_starts_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage, message: str
) -> None:
    clock = Clock()
    path = snapshot_path(tmp_path)
    save(filled(clock), path)
    path.write_bytes(bytes(damage(bytearray(path.read_bytes()))))
    ks = Keyspace(clock_ms=clock)
    snapshots = NodeSnapshots(ks, tmp_path, SnapshotPolicy(on_shutdown=True), lambda _: meta(ks))
    with caplog.at_level(logging.ERROR):
        assert snapshots.load() is None
    assert ks.key_count == 0
    assert message in caplog.text and "starting empty" in caplog.text
    # Kept for inspection, out of the way of the next save.
    assert not path.exists() and path.with_name(path.name + ".rejected").exists()


def test_a_slot_record_whose_lengths_lie_is_refused() -> None:
    frame = fmt.slot_frame(7, [b"a", b"b"], [b"1", b"2"], [0, 0])
    payload = bytearray(frame[fmt.FRAME_HEAD.size : -fmt.CRC.size])
    struct.pack_into("<I", payload, fmt.SLOT_HEAD.size, 99)  # first key's length
    with pytest.raises(fmt.SnapshotError, match="lengths"):
        fmt.decode_slot(memoryview(bytes(payload)))


def test_no_file_means_a_fresh_start(tmp_path: Path) -> None:
    ks = Keyspace()
    snapshots = NodeSnapshots(ks, tmp_path, SnapshotPolicy(on_shutdown=True), lambda _: meta(ks))
    assert snapshots.load() is None and ks.key_count == 0


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("off", SnapshotPolicy()),
        ("on-shutdown", SnapshotPolicy(on_shutdown=True)),
        ("interval:2.5", SnapshotPolicy(on_shutdown=True, interval_s=2.5)),
    ],
)
def test_policy_parses(text: str, policy: SnapshotPolicy) -> None:
    assert SnapshotPolicy.parse(text) == policy
    assert str(policy) == text


@pytest.mark.parametrize("text", ["sometimes", "interval:", "interval:0", "interval:x"])
def test_policy_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="on-shutdown"):
        SnapshotPolicy.parse(text)
