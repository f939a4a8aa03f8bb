"""``clusterctl rolling-restart`` under load: nothing acknowledged is lost, every key is there.

A writer (``min_replicas=1``) and a reader use the SDK, which retries
UNAVAILABLE by itself. With one replica per primary, a write that needs
one replica cannot be acknowledged while the only other copy restarts: the
primary holds it (up to ``--min-replicas-timeout``) until the copy's
replacement, started before the copy was stopped, has loaded the snapshot
and resynced, so the wait shows as a pause, which is timed, not as an
error. No write may fail, with one replica or two. The longest gap between
two acknowledged writes to one shard (the slots of one primary, which move
together in a failover) is reported for each restart, with where the
longest gaps began after SIGTERM (a primary's restart has two: its handoff,
then its own absence as its successor's replica); the goal is 500 ms.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import slotcache
from slotcache.contract import SLOT_COUNT, key_slot
from slotcache.ctl import local
from slotcache.ctl.cluster_ops import NodeHandle
from slotcache.ctl.main import main as clusterctl
from slotcache.ctl.rolling_restart import Restarted, rolling_restart
from tests.support.ctl import brought_down
from tests.support.ports import free_port_block

pytestmark = pytest.mark.slow

PRIMARIES = 3
KEYS = 2000
WRITE_TIMEOUT_S = 10.0
PAUSE_GOAL_S = 0.5
PAUSE_BOUND_S = 2.0


def node_stats(address: str) -> dict[str, int]:
    with NodeHandle.open(address, 5.0) as node:
        return dict(node.info().stats)


def shard(key: bytes) -> int:
    """Which primary's third of the slots (as ``create`` splits them) holds ``key``."""
    return key_slot(key) * PRIMARIES // SLOT_COUNT


@pytest.fixture
def up(tmp_path: Path) -> Iterator[object]:
    """``up(replicas)``: ``clusterctl up`` in a folder; whatever it started is always stopped."""
    with brought_down(tmp_path / "cluster") as root:

        def start(replicas: int) -> tuple[Path, list[str]]:
            count = PRIMARIES * (replicas + 1)
            base = free_port_block(count)
            args = ["up", "--dir", str(root), "--base-port", str(base), "--node-timeout-ms", "1000"]
            shape = ["--primaries", str(PRIMARIES), "--replicas", str(replicas)]
            assert clusterctl([*args, *shape]) == 0
            return root, [f"{local.HOST}:{base + i}" for i in range(count)]

        yield start


@dataclass
class Load:
    """One writer and one reader, with what each saw."""

    addresses: list[str]
    stop: threading.Event = field(default_factory=threading.Event)
    acked: dict[bytes, bytes] = field(default_factory=dict)
    # Values sent whose outcome is unknown (the call raised): key -> values.
    unsure: dict[bytes, set[bytes]] = field(default_factory=dict)
    # When each write was acknowledged, per shard.
    ack_times: dict[int, list[float]] = field(default_factory=dict)
    # (when, error class) of every error that reached the writer or the reader.
    errors: list[tuple[float, str]] = field(default_factory=list)
    reads: int = 0

    def write(self) -> None:
        with slotcache.Client(self.addresses, timeout=WRITE_TIMEOUT_S) as client:
            seq = 0
            while not self.stop.is_set():
                key = b"rr:%d" % (seq % KEYS)
                value = b"v%d" % seq
                try:
                    client.set(key, value, min_replicas=1)
                except slotcache.SlotcacheError as exc:
                    self.errors.append((time.monotonic(), f"write {type(exc).__name__}"))
                    if not isinstance(exc, slotcache.errors.NotEnoughReplicas):
                        self.unsure.setdefault(key, set()).add(value)
                    time.sleep(0.005)
                else:
                    self.acked[key] = value
                    self.ack_times.setdefault(shard(key), []).append(time.monotonic())
                seq += 1

    def read(self) -> None:
        rng = random.Random(1)
        with slotcache.Client(self.addresses, timeout=WRITE_TIMEOUT_S) as client:
            while not self.stop.is_set():
                try:
                    client.get(b"rr:%d" % rng.randrange(KEYS))
                    self.reads += 1
                except slotcache.SlotcacheError as exc:
                    self.errors.append((time.monotonic(), f"read {type(exc).__name__}"))
                time.sleep(0.001)

    def gaps(self, began: float, ended: float) -> list[tuple[float, float]]:
        """(length, start) of the gaps between acknowledged writes to one shard in the window."""
        return sorted(
            (
                (b - a, a)
                for times in self.ack_times.values()
                for a, b in itertools.pairwise(times)
                if b >= began and a <= ended
            ),
            reverse=True,
        )

    def longest_pause(self, began: float, ended: float) -> float:
        """The longest gap between two acknowledged writes to one shard overlapping the window."""
        return max((length for length, _ in self.gaps(began, ended)), default=ended - began)

    @property
    def acknowledged(self) -> int:
        return sum(map(len, self.ack_times.values()))


def describe(load: Load, node: Restarted) -> str:
    refused = sum(1 for t, _ in load.errors if node.began <= t <= node.ended)
    # The longest gap of each distinct stall (every shard stalls with the single writer).
    stalls: list[tuple[float, float]] = []
    for length, start in load.gaps(node.began, node.ended):
        if all(abs(start - other) > 0.1 for _, other in stalls):
            stalls.append((length, start))
    where = ", ".join(f"{n * 1000:.0f} ms at +{(t - node.began):.2f}s" for n, t in stalls[:2])
    return (
        f"{node.role} {node.address}: replacement standing by after {node.standby_s:.1f}s, "
        f"back {node.down_s:.1f}s after SIGTERM, longest write pauses {where or 'none'}, "
        f"{refused} errors"
    )


@pytest.mark.parametrize("replicas", [1, 2])
def test_rolling_restart_under_load_loses_nothing(up, report_figure, replicas: int) -> None:
    root, addresses = up(replicas)
    load = Load(addresses)
    # Every key exists before the restart begins: each must still be there after it.
    with slotcache.Client(addresses) as client:
        for at in range(0, KEYS, 500):
            batch = {b"rr:%d" % i: b"initial" for i in range(at, min(at + 500, KEYS))}
            client.mset(batch, min_replicas=1)
            load.acked.update(batch)
    threads = [threading.Thread(target=load.write), threading.Thread(target=load.read)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        began = time.monotonic()
        restarted = rolling_restart(root, timeout=5.0, wait_s=60.0, stop_timeout=15.0)
        took = time.monotonic() - began
        time.sleep(0.5)
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(WRITE_TIMEOUT_S + 5)
    with slotcache.Client(addresses) as client:
        keys = sorted(load.acked)
        values = dict(zip(keys, client.mget(keys), strict=True))
    # Each node came back from its snapshot and resumed with a partial sync.
    full_syncs = {a: node_stats(a).get("repl.full_syncs", 0) for a in addresses}
    lost = [
        k for k in keys if values[k] != load.acked[k] and values[k] not in load.unsure.get(k, ())
    ]
    kinds = Counter(kind for _, kind in load.errors)
    primaries = [r for r in restarted if r.role == "primary"]
    handoff_pause = max(load.longest_pause(r.began, r.ended) for r in primaries)
    report_figure(
        f"rolling restart of {PRIMARIES} primaries with {replicas} replica(s) each under load "
        f"in {took:.1f}s: {load.acknowledged} acknowledged writes (min_replicas=1) to "
        f"{len(keys)} keys, lost {len(lost)}, absent {sum(v is None for v in values.values())}; "
        f"{load.reads} reads; errors reaching the clients: {dict(kinds) or 'none'}; longest "
        f"write pause over a primary's restart {handoff_pause * 1000:.0f} ms, over the whole run "
        f"{load.longest_pause(began, began + took) * 1000:.0f} ms (goal "
        f"{PAUSE_GOAL_S * 1000:.0f} ms); " + "; ".join(describe(load, r) for r in restarted)
    )
    assert [r.role for r in restarted] == ["replica"] * (PRIMARIES * replicas) + [
        "primary"
    ] * PRIMARIES
    assert full_syncs == dict.fromkeys(addresses, 0)
    # Four times the goal: the machine running the tests is shared.
    assert handoff_pause < PAUSE_BOUND_S
    assert len(keys) == KEYS
    assert lost == []
    assert all(values[k] is not None for k in keys)
    # The copy is back well within --min-replicas-timeout: no write is refused or
    # times out, even one in flight when the copy left.
    assert not kinds
