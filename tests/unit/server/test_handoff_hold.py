"""The write hold of a migration's handoff, on the source.

Writes to the slots wait while the target takes them. A write that waited as
long as it may is refused (UNAVAILABLE, retryable), never applied: the target
may claim the slots at any moment and a write the old owner applied after
that would be lost. The source cannot cancel once it has paused (only the
target can), and it ends a handoff whose claim never comes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

import slotcache_server.migration.source as source_module
import slotcache_server.services.cache as cache_module
from slotcache.contract import key_slot
from slotcache.v1 import cache_pb2 as pb
from slotcache_server.config import ServerConfig
from slotcache_server.holds import WriteHolds
from slotcache_server.keyspace import Keyspace
from slotcache_server.migration.progress import MigrationRecord
from slotcache_server.migration.source import MigrationSources, OutgoingMigration
from slotcache_server.node import Node
from slotcache_server.services.cache import CacheService
from slotcache_server.wire import migration_pb2 as mpb


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code


class Context:
    def invocation_metadata(self) -> tuple[()]:
        return ()

    def time_remaining(self) -> None:
        return None

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def set_trailing_metadata(self, metadata: Any) -> None:
        pass

    async def abort_with_status(self, status: Any) -> None:
        raise Aborted(status.code, status.details)

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


def service(tmp_path: Path, held: set[int]) -> tuple[CacheService, Node]:
    """A node owning every slot, whose writes to ``held`` slots are held."""
    node = Node(ServerConfig(data_dir=tmp_path))
    node.holds.hold(held)
    return node.cache_service(), node


@pytest.fixture(autouse=True)
def short_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "WRITE_HOLD_MAX_S", 0.05)


async def test_a_write_held_too_long_is_refused_not_applied(tmp_path: Path) -> None:
    cache, node = service(tmp_path, {key_slot(b"a")})
    keyspace = node.keyspace
    with pytest.raises(Aborted) as caught:
        await cache.Set(pb.SetRequest(key=b"a", value=b"1"), Context())  # type: ignore[arg-type]
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert "being handed over" in str(caught.value)
    assert keyspace.get(b"a") is None
    # Reads are never held, and writes to other slots go through.
    assert (await cache.Get(pb.GetRequest(key=b"a"), Context())).value == b""  # type: ignore[arg-type]
    await cache.Set(pb.SetRequest(key=b"b", value=b"2"), Context())  # type: ignore[arg-type]
    assert keyspace.get(b"b") == b"2"


async def test_a_write_released_in_time_is_applied(tmp_path: Path) -> None:
    slot = key_slot(b"a")
    cache, node = service(tmp_path, {slot})
    loop = asyncio.get_running_loop()
    loop.call_later(0.01, node.holds.release, [slot])
    started = loop.time()
    await cache.Set(pb.SetRequest(key=b"a", value=b"1"), Context())  # type: ignore[arg-type]
    assert node.keyspace.get(b"a") == b"1"
    # Woken by the release, not by the hold's limit running out.
    assert loop.time() - started < 0.04


async def test_pipeline_refuses_only_the_held_writes(tmp_path: Path) -> None:
    cache, node = service(tmp_path, {key_slot(b"a")})
    keyspace = node.keyspace
    keyspace.set_with_deadline(b"a", b"old", 0)
    batch = pb.PipelineRequest(
        ops=[
            pb.Operation(id=1, set=pb.SetRequest(key=b"a", value=b"new")),
            pb.Operation(id=2, get=pb.GetRequest(key=b"a")),
            pb.Operation(id=3, set=pb.SetRequest(key=b"b", value=b"2")),
        ]
    )

    async def requests() -> AsyncIterator[pb.PipelineRequest]:
        yield batch

    replies = [r async for r in cache.Pipeline(requests(), Context())]  # type: ignore[arg-type]
    (reply,) = replies
    first, second, third = reply.results
    assert first.error.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert second.get.value == b"old"
    assert not third.HasField("error")
    assert keyspace.get(b"a") == b"old" and keyspace.get(b"b") == b"2"


def start_request(slot: int) -> mpb.MigrationRequest:
    """A target's first message: migration "m" of ``slot``."""
    return mpb.MigrationRequest(
        start=mpb.MigrationStart(target=b"\x02" * 20, slots=[slot, slot], migration_id="m")
    )


async def test_the_source_cannot_cancel_once_it_has_paused() -> None:
    sources = MigrationSources(Keyspace(), lambda slots: "", lambda *a: None, {}, WriteHolds())
    record = MigrationRecord("m1", "source", "", "ab" * 20, [1])
    out = OutgoingMigration(record, frozenset({1}))
    sources._active["m1"] = out
    out.paused = True
    assert sources.cancel("m1") is False
    out.paused = False
    assert sources.cancel("m1") is True
    assert sources.cancel("unknown") is False


async def test_the_source_ends_a_handoff_whose_claim_never_comes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(source_module, "HOLD_TIMEOUT_S", 0.1)
    keyspace = Keyspace()
    keyspace.set_with_deadline(b"a", b"1", 0)
    slot = key_slot(b"a")
    records: dict[str, MigrationRecord] = {}
    sources = MigrationSources(keyspace, lambda slots: "", lambda *a: None, records, WriteHolds())
    done = asyncio.Event()

    async def requests() -> AsyncIterator[mpb.MigrationRequest]:
        yield start_request(slot)
        await done.wait()
        yield mpb.MigrationRequest(handoff=mpb.MigrationHandoff())
        await asyncio.Event().wait()  # a target that hangs after asking for the handoff

    kinds = []
    async with asyncio.timeout(5):
        async for event in sources.serve(requests()):
            kind = event.WhichOneof("kind")
            kinds.append(kind)
            if kind == "snapshot_done":
                done.set()
            if kind == "paused":
                assert sources.holds.handing_off(slot)
    assert kinds[-2:] == ["snapshot_done", "paused"]
    assert not sources.holds.handing_off(slot)
    assert records["m"].state == "failed" and "did not take the slots" in records["m"].error


async def test_the_source_sends_nothing_after_the_pause_even_when_it_drops_the_slots() -> None:
    """Gossip can tell the source of the claim before the claim's own message does.

    The source then drops its copy of the slots; those deletes must not reach
    the target, which owns the slots by then and would apply them.
    """
    keyspace = Keyspace()
    keys = [f"{{tag}}:{i}".encode() for i in range(50)]
    for key in keys:
        keyspace.set_with_deadline(key, b"v", 0)
    slot = key_slot(keys[0])
    sources = MigrationSources(keyspace, lambda slots: "", lambda *a: None, {}, WriteHolds())
    copied = asyncio.Event()
    paused = asyncio.Event()
    released = asyncio.Event()

    async def requests() -> AsyncIterator[mpb.MigrationRequest]:
        yield start_request(slot)
        await copied.wait()
        yield mpb.MigrationRequest(handoff=mpb.MigrationHandoff())
        await paused.wait()
        keyspace.clear_slot(slot)  # the claim arrived by gossip first
        await released.wait()
        yield mpb.MigrationRequest(
            claimed=mpb.MigrationClaimed(target=b"\x02" * 20, config_epoch=9)
        )

    kinds = []
    async with asyncio.timeout(5):
        async for event in sources.serve(requests()):
            kind = event.WhichOneof("kind")
            kinds.append(kind)
            if kind == "snapshot_done":
                copied.set()
            if kind == "paused":
                paused.set()
                await asyncio.sleep(0.05)  # let the drop's deletes be flushed, if they were kept
                released.set()
    assert kinds[-1] == "paused", kinds
    assert "ops" not in kinds[kinds.index("paused") :]
