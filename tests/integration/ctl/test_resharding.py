"""Live resharding with real processes: rebalance under load, kill mid-migration, drain and
delete, Ctrl-C in the middle of a reshard, and dry runs.

clusterctl runs as a separate process wherever the test needs to load the
cluster at the same time or to send it a signal, as an operator would run it.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from slotcache.ctl.add_node import add_node
from slotcache.ctl.cluster_ops import NodeHandle, fetch_state
from slotcache.ctl.launcher import ServerProcess
from slotcache.v1 import admin_pb2, cache_pb2, cache_pb2_grpc
from tests.support import sdk, security
from tests.support.ctl import run_cli, start_nodes
from tests.support.nodes import owners_by_slot, wait_for
from tests.support.processes import Cluster, ServerFactory
from tests.support.workload import start_cluster

SLOTS = 16384
NODE_TIMEOUT = ("--node-timeout", "1000")
VALUE = b"v" * 100
LONG_TTL_MS = 3_600_000


# ---- helpers ------------------------------------------------------------------------------


def cli_json(*argv: str, code: int = 0, timeout: float = 180.0) -> dict[str, Any]:
    result = run_cli(*argv, "--json", timeout=timeout)
    assert result.returncode == code, result.stderr + result.stdout
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def new_node(servers: ServerFactory, cluster: Cluster) -> ServerProcess:
    """One more empty cluster node, added to the cluster as a primary without slots."""
    node = servers.start(*NODE_TIMEOUT, cluster=True)
    cluster.nodes.append(node)
    add_node(node.address, cluster.addresses[0])
    return node


def node_id(address: str) -> str:
    return fetch_state(address, 5.0).myself


def slot_counts(address: str) -> dict[str, int]:
    """Node id -> slots it owns, in the view of ``address``."""
    state = fetch_state(address, 5.0)
    return {
        p.node.id: sum(r.end - r.start + 1 for r in p.node.slots)
        for p in state.peers
        if p.node.role != cache_pb2.ROLE_REPLICA
    }


def slot_ranges(address: str, owner: str) -> list[tuple[int, int]]:
    state = fetch_state(address, 5.0)
    (peer,) = [p for p in state.peers if p.node.id == owner]
    return [(r.start, r.end) for r in peer.node.slots]


def topology(address: str) -> cache_pb2.TopologyReply:
    with security.current().channel(address) as channel:
        reply: cache_pb2.TopologyReply = cache_pb2_grpc.CacheStub(channel).Topology(
            cache_pb2.TopologyRequest(), timeout=5
        )
        return reply


def assert_one_owner_everywhere(addresses: Sequence[str]) -> list[str]:
    """Every live node reports the same owner for every slot, and every slot has one."""
    tables = {a: owners_by_slot(topology(a)) for a in addresses}
    first = tables[addresses[0]]
    assert all(owner for owner in first), "a slot has no owner"
    for address, table in tables.items():
        differing = [s for s in range(SLOTS) if table[s] != first[s]]
        assert not differing, f"{address} disagrees on {len(differing)} slots"
    return first


def wait_check_passes(address: str, within: float = 20.0) -> dict[str, Any]:
    """Poll ``check`` until it exits 0 (gossip may take a round after a change)."""
    deadline = time.monotonic() + within
    while True:
        result = run_cli("check", address, "--json")
        data: dict[str, Any] = json.loads(result.stdout)
        if result.returncode == 0:
            return data
        assert time.monotonic() < deadline, data["problems"]
        time.sleep(0.3)


def load_keys(address: str, count: int, prefix: str = "k") -> dict[bytes, int]:
    """Write ``count`` keys of 100 bytes; every fourth has a long TTL. Key -> TTL (0: none)."""
    keys = {f"{prefix}:{i}".encode(): (LONG_TTL_MS if i % 4 == 0 else 0) for i in range(count)}
    with sdk.client(address, timeout=30.0) as client:
        plain = [k for k, ttl in keys.items() if not ttl]
        timed = [k for k, ttl in keys.items() if ttl]
        for chunk in range(0, len(plain), 5000):
            client.mset({k: VALUE for k in plain[chunk : chunk + 5000]})
        for chunk in range(0, len(timed), 5000):
            client.mset({k: VALUE for k in timed[chunk : chunk + 5000]}, ttl_ms=LONG_TTL_MS)
    return keys


def one_batch_reshard(seed: str, source: str, target: str, slots: int, keys: int) -> list[str]:
    """clusterctl's arguments to move ``slots`` slots (about ``keys`` keys) in one migration."""
    return [
        *("reshard", seed, "--from", source, "--to", target, "--slots", str(slots)),
        *("--batch-slots", str(slots), "--batch-keys", str(keys), "--yes"),
    ]


def missing_keys(address: str, keys: Sequence[bytes]) -> list[bytes]:
    """Keys that do not read back with their value."""
    missing = []
    with sdk.client(address, timeout=30.0) as client:
        for chunk in range(0, len(keys), 5000):
            part = list(keys[chunk : chunk + 5000])
            for key, value in zip(part, client.mget(part), strict=True):
                if value != VALUE:
                    missing.append(key)
    return missing


def migration_records(address: str) -> list[admin_pb2.MigrationProgress]:
    with NodeHandle.open(address, 5.0) as node:
        reply = node.call("MigrationStatus", admin_pb2.MigrationStatusRequest())
    assert isinstance(reply, admin_pb2.MigrationStatusReply)
    return list(reply.migrations)


# ---- 1. rebalance under load -----------------------------------------------------------------


@dataclass
class Acked:
    """The last acknowledged write of one key."""

    value: bytes
    ttl_ms: int
    sent: float
    acked: float


@dataclass
class Worker:
    """A thread of client load: counts operations and errors, records acknowledged writes."""

    name: str
    ops: int = 0
    errors: list[str] = field(default_factory=list)
    acked: dict[bytes, Acked] = field(default_factory=dict)
    # (wall-clock end, seconds) of every operation slower than 20 ms.
    slow: list[tuple[float, float]] = field(default_factory=list)


class Load:
    """Smart-client threads and a plain generated stub, reading and writing until stopped."""

    def __init__(self, addresses: Sequence[str], initial: Sequence[bytes]) -> None:
        self.stop = threading.Event()
        self.client = sdk.client(list(addresses), timeout=20.0)
        self.workers: list[Worker] = []
        self.threads: list[threading.Thread] = []
        self._initial = list(initial)
        self._stub_address = addresses[0]

    def start(self, smart_threads: int = 3) -> None:
        for i in range(smart_threads):
            self._spawn(f"smart{i}", self._smart)
        self._spawn("stub", self._stub)
        self.samples: list[tuple[float, int]] = []
        sampler = threading.Thread(target=self._sample, name="sampler", daemon=True)
        self.threads.append(sampler)
        sampler.start()

    def _sample(self) -> None:
        while not self.stop.wait(0.02):
            self.samples.append((time.time(), self.ops()))

    def rate_between(self, start: float, end: float) -> float:
        """Operations per second between two wall-clock times (from the 20 ms samples)."""
        inside = [(t, n) for t, n in self.samples if start <= t <= end]
        if len(inside) < 2:
            before = [(t, n) for t, n in self.samples if t <= start][-1:]
            after = [(t, n) for t, n in self.samples if t >= end][:1]
            inside = before + after
        (t0, n0), (t1, n1) = inside[0], inside[-1]
        return (n1 - n0) / (t1 - t0)

    def _spawn(self, name: str, body: Callable[[Worker], None]) -> None:
        worker = Worker(name)
        self.workers.append(worker)
        thread = threading.Thread(target=body, args=(worker,), name=name, daemon=True)
        self.threads.append(thread)
        thread.start()

    def ops(self) -> int:
        return sum(w.ops for w in self.workers)

    def _smart(self, worker: Worker) -> None:
        rng = random.Random(worker.name)
        seq = 0
        while not self.stop.is_set():
            seq += 1
            began = time.monotonic()
            try:
                if seq % 2:
                    key = f"{worker.name}:{rng.randrange(3000)}".encode()
                    value = f"{worker.name}:{seq}".encode()
                    ttl = 600_000 if seq % 3 == 0 else 0
                    sent = time.monotonic()
                    self.client.set(key, value, ttl_ms=ttl or None)
                    worker.acked[key] = Acked(value, ttl, sent, time.monotonic())
                else:
                    key = rng.choice(self._initial)
                    got = self.client.get(key)
                    if got != VALUE:
                        worker.errors.append(f"read {key!r}: {got!r}")
                worker.ops += 1
                took = time.monotonic() - began
                if took > 0.02:
                    worker.slow.append((time.time(), took))
            except Exception as exc:
                worker.errors.append(f"{type(exc).__name__}: {exc}")

    def _stub(self, worker: Worker) -> None:
        rng = random.Random(worker.name)
        channel = security.current().channel(self._stub_address)
        stub = cache_pb2_grpc.CacheStub(channel)
        seq = 0
        try:
            while not self.stop.is_set():
                seq += 1
                began = time.monotonic()
                try:
                    if seq % 2:
                        key = f"stub:{rng.randrange(3000)}".encode()
                        value = f"stub:{seq}".encode()
                        ttl = 600_000 if seq % 3 == 0 else 0
                        sent = time.monotonic()
                        stub.Set(cache_pb2.SetRequest(key=key, value=value, ttl_ms=ttl), timeout=20)
                        worker.acked[key] = Acked(value, ttl, sent, time.monotonic())
                    else:
                        key = rng.choice(self._initial)
                        reply = stub.Get(cache_pb2.GetRequest(key=key), timeout=20)
                        if reply.value != VALUE:
                            worker.errors.append(f"read {key!r}: {reply!r}")
                    worker.ops += 1
                    took = time.monotonic() - began
                    if took > 0.02:
                        worker.slow.append((time.time(), took))
                except grpc.RpcError as exc:
                    worker.errors.append(f"{exc.code().name}: {exc.details()}")
        finally:
            channel.close()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def rate(self, seconds: float) -> float:
        """Operations per second over the next ``seconds``."""
        start, t0 = self.ops(), time.monotonic()
        time.sleep(seconds)
        return (self.ops() - start) / (time.monotonic() - t0)


def verify_acked(address: str, workers: Sequence[Worker]) -> tuple[int, list[str]]:
    """Read back every acknowledged write: its value, and a remaining TTL within bounds."""
    acked = {k: a for w in workers for k, a in w.acked.items()}
    problems: list[str] = []
    keys = list(acked)
    with sdk.client(address, timeout=30.0) as client:
        for chunk in range(0, len(keys), 2000):
            part = keys[chunk : chunk + 2000]
            asked = time.monotonic()
            pipe = client.pipeline()
            for key in part:
                pipe.get(key).ttl(key)
            results = pipe.execute()
            answered = time.monotonic()
            for i, key in enumerate(part):
                value, ttl = results[2 * i], results[2 * i + 1]
                want = acked[key]
                if value != want.value:
                    problems.append(f"{key!r}: {value!r} != {want.value!r}")
                elif not want.ttl_ms and ttl != -1:
                    problems.append(f"{key!r}: TTL {ttl}, expected none")
                elif want.ttl_ms:
                    # Set between sent and acked; read between asked and answered.
                    high = want.ttl_ms - (asked - want.acked) * 1000 + 50
                    low = want.ttl_ms - (answered - want.sent) * 1000 - 50
                    if not low <= ttl <= high:
                        problems.append(f"{key!r}: TTL {ttl} outside {low:.0f}..{high:.0f}")
    return len(keys), problems


@pytest.mark.slow
def test_rebalance_under_load_moves_a_quarter_without_errors_or_loss(
    servers: ServerFactory,
) -> None:
    cluster = start_cluster(servers, 3, 0)
    seed = cluster.addresses[0]
    initial = load_keys(seed, 200_000)
    load = Load(cluster.addresses, list(initial)[::7])
    load.start()
    try:
        time.sleep(1.0)  # warm up: streams open, slot maps loaded
        before = load.rate(3.0)
        new = new_node(servers, cluster)
        ops0, t0 = load.ops(), time.monotonic()
        result = run_cli(
            "rebalance",
            seed,
            "--use-empty-primaries",
            "--yes",
            "--json",
            timeout=240,
        )
        whole = (load.ops() - ops0) / (time.monotonic() - t0)
        after = load.rate(2.0)
    finally:
        load.finish()
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    moved = data["result"]
    during = load.rate_between(moved["started_at"], moved["finished_at"])
    redirects = load.client.stats.redirects
    load.client.close()

    # Every node holds a quarter of the slots, within the 2% threshold.
    counts = slot_counts(seed)
    assert len(counts) == 4
    for count in counts.values():
        assert abs(count - SLOTS / 4) <= 0.02 * SLOTS / 4, counts
    assert counts[node_id(new.address)] == moved["slots_moved"] == 4096
    addresses = [*cluster.addresses]
    assert_one_owner_everywhere(addresses)
    wait_check_passes(seed)

    # Nothing acknowledged was lost; TTLs survived the move.
    assert not missing_keys(seed, list(initial))
    with sdk.client(seed) as client:
        timed = [k for k, ttl in initial.items() if ttl][:2000]
        ttls = client.pipeline()
        for key in timed:
            ttls.ttl(key)
        assert all(0 < t <= LONG_TTL_MS for t in ttls.execute())
    checked, problems = verify_acked(seed, load.workers)
    assert not problems, problems[:10]
    assert checked > 1000

    # No client saw an error; the smart client followed redirects.
    errors = [e for w in load.workers for e in w.errors]
    assert not errors, errors[:10]
    assert redirects > 0
    ratio, whole_ratio = during / before, whole / before
    slowest = max(
        (
            took
            for w in load.workers
            for end, took in w.slow
            if moved["started_at"] <= end <= moved["finished_at"] + 0.5
        ),
        default=0.0,
    )
    print(
        f"\nrebalance under load: {moved['slots_moved']} slots, {moved['keys_moved']:,} keys "
        f"in {moved['seconds']:.2f}s = {moved['keys_per_s']:,.0f} keys/s "
        f"({len(moved['batches'])} migrations); client ops/s before {before:,.0f}, "
        f"during the migrations {during:,.0f} ({ratio:.0%}), during the whole command "
        f"{whole:,.0f} ({whole_ratio:.0%}), after {after:,.0f}; slowest client operation "
        f"during the migrations {slowest * 1000:.0f} ms; smart redirects {redirects}, "
        f"client errors {len(errors)}; {checked:,} acknowledged writes verified"
    )
    # On 2 cores shared by 4 servers, this load generator and clusterctl, the clients
    # kept 54-65% over the whole command and 39-52% during the copy itself (see the
    # report); the floors here leave room for a slower or busier CI machine.
    assert ratio >= 0.2, f"client throughput fell to {ratio:.0%} during the migrations"
    assert whole_ratio >= 0.4, f"client throughput fell to {whole_ratio:.0%} during the command"
    assert slowest < 2.0


@pytest.mark.slow
def test_migration_speed_with_no_client_load(servers: ServerFactory) -> None:
    """Half of 200k keys of 100 bytes move in one migration; report keys per second."""
    cluster = start_cluster(servers, 1, 0)
    seed = cluster.addresses[0]
    keys = load_keys(seed, 200_000)
    target = new_node(servers, cluster)
    moved = cli_json(
        *one_batch_reshard(seed, node_id(seed), node_id(target.address), 8192, len(keys))
    )["result"]
    assert moved["slots_moved"] == 8192 and len(moved["batches"]) == 1
    (batch,) = moved["batches"]
    print(
        f"\nmigration with no client load: {batch['keys']:,} keys of 100 bytes in "
        f"{batch['seconds']:.2f}s = {batch['keys'] / batch['seconds']:,.0f} keys/s"
    )
    assert batch["keys"] > 90_000
    assert not missing_keys(seed, list(keys))
    # A floor well under the figure measured (see the report), so a slow CI machine passes.
    assert batch["keys"] / batch["seconds"] > 30_000


# ---- 2. kill the target mid-migration ------------------------------------------------------


@pytest.mark.slow
def test_killing_the_target_mid_migration_loses_nothing(servers: ServerFactory) -> None:
    cluster = start_cluster(servers, 2, 0)
    seed = cluster.addresses[0]
    keys = load_keys(seed, 200_000)
    target = new_node(servers, cluster)
    source_id, target_id = node_id(seed), node_id(target.address)
    owned = slot_counts(seed)[source_id]
    owners_before = owners_by_slot(topology(seed))
    reshard = subprocess.Popen(
        [
            *(sys.executable, "-m", "slotcache.ctl.main"),
            *one_batch_reshard(seed, source_id, target_id, owned, len(keys)),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def mid_flight() -> admin_pb2.MigrationProgress | None:
            for record in migration_records(target.address):
                if 0.1 * owned <= record.slots_done <= 0.9 * owned:
                    return record
            return None

        caught = wait_for(mid_flight, 60, "the migration to be under way", interval=0.005)
        target.kill()
        out, err = reshard.communicate(timeout=60)
    finally:
        if reshard.poll() is None:
            reshard.kill()
    assert caught.state == admin_pb2.MIGRATION_STATE_SNAPSHOT
    assert reshard.returncode == 1, err
    assert "stopped answering" in err and "kept the slots" in err
    result = json.loads(out)["result"]
    assert result["slots_moved"] == 0 and result["error"]

    # fix: nothing to repair but a dead, slotless node; every slot still has one owner.
    fixed = cli_json("fix", seed, "--wait", "10")
    assert fixed["ok"] is True, fixed
    assert any("does not answer" in w for w in fixed["warnings"])
    live = [a for a in cluster.addresses if a != target.address]
    assert assert_one_owner_everywhere(live) == owners_before
    # The source kept every key, and holds no half-migration.
    assert not missing_keys(seed, list(keys))
    source_records = [m for m in migration_records(seed) if m.side == "source"]
    assert [m.state for m in source_records] == [admin_pb2.MIGRATION_STATE_FAILED]
    print(
        f"\nkilled the target at {caught.slots_done}/{owned} slots, {caught.keys:,} keys; "
        f"all {len(keys):,} keys still on the source"
    )


@pytest.mark.slow
def test_fix_cancels_a_migration_whose_target_hangs(servers: ServerFactory) -> None:
    """SIGSTOP the target mid-migration: the source's side is orphaned, and fix ends it."""
    cluster = start_cluster(servers, 2, 0)
    seed = cluster.addresses[0]
    keys = load_keys(seed, 200_000)
    target = new_node(servers, cluster)
    source_id = node_id(seed)
    owned = slot_counts(seed)[source_id]
    owners_before = owners_by_slot(topology(seed))
    ranges = [cache_pb2.SlotRange(start=s, end=e) for s, e in slot_ranges(seed, source_id)]
    with NodeHandle.open(target.address, 5.0) as node:
        reply = node.call(
            "ImportSlots", admin_pb2.ImportSlotsRequest(source_id=source_id, ranges=ranges)
        )
    assert isinstance(reply, admin_pb2.ImportSlotsReply)

    def mid_flight() -> admin_pb2.MigrationProgress | None:
        for record in migration_records(target.address):
            if 0.1 * owned <= record.slots_done <= 0.5 * owned:
                return record
        return None

    wait_for(mid_flight, 60, "the migration to be under way", interval=0.005)
    target.send_signal(signal.SIGSTOP)
    try:
        fixed = cli_json("fix", seed, "--timeout", "1", "--wait", "20", timeout=120)
    finally:
        target.send_signal(signal.SIGCONT)
    assert fixed["ok"] is True, fixed
    ((cancelled,),) = [fixed["cancelled"]]
    assert cancelled["migration_id"] == reply.migration_id
    assert cancelled["side"] == "source" and cancelled["address"] == seed
    assert "orphaned" in cancelled["reason"] and "does not answer" in cancelled["reason"]
    (record,) = [m for m in migration_records(seed) if m.migration_id == reply.migration_id]
    assert record.state == admin_pb2.MIGRATION_STATE_FAILED and record.error == "cancelled"

    # Resumed, the target finds its stream gone and drops everything it received.
    def target_clean() -> bool:
        (mine,) = migration_records(target.address)
        info = NodeHandle.open(target.address, 5.0).info()
        return mine.state == admin_pb2.MIGRATION_STATE_FAILED and info.stats["keys"] == 0

    # (It hears nothing more from the source: a stalled stream cannot be closed from the
    # source's end, grpc/grpc#29248, so the target gives up after 10 s of silence.)
    wait_for(target_clean, 30, "the resumed target to drop its copy")
    wait_check_passes(seed)
    assert assert_one_owner_everywhere(cluster.addresses) == owners_before
    assert not missing_keys(seed, list(keys))


# ---- 3. drain and delete ---------------------------------------------------------------------


@pytest.mark.slow
def test_drain_then_del_node(servers: ServerFactory) -> None:
    cluster = start_cluster(servers, 3, 0)
    seed = cluster.addresses[0]
    keys = load_keys(seed, 20_000)
    ids = [node_id(a) for a in cluster.addresses]
    drained = cluster.nodes[2]

    # A node with slots is refused, and nothing changes.
    before = {a: fetch_state(a, 5.0) for a in cluster.addresses}
    refused = run_cli("del-node", seed, ids[1][:8])
    assert refused.returncode == 1
    assert f"{cluster.addresses[1]} ({ids[1][:8]}) still owns 5,461 slots" in refused.stderr
    assert "nothing was changed" in refused.stderr
    for address in cluster.addresses:
        after = fetch_state(address, 5.0)
        assert after.known_nodes == 3 and after.cluster_ok
        assert [p.node.id for p in after.peers] == [p.node.id for p in before[address].peers]

    # Drain node 2 to node 0: it becomes a replica of node 0 (it lost its last slot).
    moved = cli_json("reshard", seed, "--from", ids[2], "--to", ids[0], "--slots", "5461", "--yes")[
        "result"
    ]
    assert moved["slots_moved"] == 5461 and moved["converged"]
    state = fetch_state(seed, 5.0)
    drained_peer = next(p for p in state.peers if p.node.id == ids[2])
    assert drained_peer.node.primary_id == ids[0]

    deleted = cli_json("del-node", seed, ids[2])
    assert deleted["stopped"] is True and deleted["role"] == "replica"
    assert sorted(deleted["forgotten_by"]) == sorted(cluster.addresses[:2])
    assert drained.proc is not None and drained.proc.wait(10) == 0  # a graceful exit
    assert not (drained.data_dir / "nodes.json").exists()
    for address in cluster.addresses[:2]:
        assert ids[2] not in {p.node.id for p in fetch_state(address, 5.0).peers}
    wait_check_passes(seed)
    assert not missing_keys(seed, list(keys))

    # A slotless primary with a replica: the replica moves to another primary first.
    empty = new_node(servers, cluster)
    replica = servers.start(*NODE_TIMEOUT, cluster=True)
    cluster.nodes.append(replica)
    add_node(replica.address, seed, replica_of=node_id(empty.address))
    deleted = cli_json("del-node", seed, node_id(empty.address)[:10])
    ((address, _id, primary),) = [
        (r["address"], r["id"], r["primary_id"]) for r in deleted["reassigned"]
    ]
    assert address == replica.address and primary in ids[:2]
    assert deleted["stopped"]
    data = wait_check_passes(seed)
    assert len(data["nodes"]) == 3


# ---- 4. Ctrl-C in the middle of a reshard ----------------------------------------------------


@pytest.mark.slow
def test_sigint_stops_a_reshard_between_batches(servers: ServerFactory) -> None:
    cluster = start_cluster(servers, 3, 0)
    seed = cluster.addresses[0]
    keys = load_keys(seed, 60_000)
    target = new_node(servers, cluster)
    target_id = node_id(target.address)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "slotcache.ctl.main",
            "reshard",
            seed,
            "--from",
            "all",
            "--to",
            target_id,
            "--slots",
            "6000",
            "--batch-slots",
            "32",
            "--yes",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: slot_counts(target.address).get(target_id, 0) >= 300 or None,
            60,
            "a few batches to complete",
            interval=0.01,
        )
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "stopping after the batch in flight" in err
    result = json.loads(out)["result"]
    assert result["interrupted"] is True and result["error"] is None
    assert 300 <= result["slots_moved"] < 6000
    assert all(b["outcome"] == "done" for b in result["batches"])
    # Every batch that completed moved its slots; nothing else moved, nothing is in flight.
    wait_check_passes(seed)
    counts = slot_counts(seed)
    assert counts[target_id] == result["slots_moved"]
    owners = assert_one_owner_everywhere(cluster.addresses)
    assert owners.count(target.address) == result["slots_moved"]
    for address in cluster.addresses:
        assert all(
            m.state != admin_pb2.MIGRATION_STATE_SNAPSHOT for m in migration_records(address)
        )
    assert not missing_keys(seed, list(keys))


# ---- 5. dry run ------------------------------------------------------------------------------


def test_rebalance_dry_run_changes_nothing(servers: ServerFactory) -> None:
    cluster = start_cluster(servers, 3, 0)
    seed = cluster.addresses[0]
    load_keys(seed, 3000)
    new = new_node(servers, cluster)
    addresses = cluster.addresses
    before = {a: owners_by_slot(topology(a)) for a in addresses}
    keys_before = {a: NodeHandle.open(a, 5).info().stats["keys"] for a in addresses}

    plan = cli_json("rebalance", seed, "--use-empty-primaries", "--dry-run")
    assert plan["dry_run"] is True and plan["result"] is None
    assert plan["slots_moved"] == 4096
    assert {m["target"] for m in plan["moves"]} == {node_id(new.address)}
    assert plan["imbalance_before_pct"] == 100.0 and plan["imbalance_after_pct"] < 0.1
    by_keys = cli_json("rebalance", seed, "--use-empty-primaries", "--dry-run", "--by", "keys")
    assert by_keys["unit"] == "keys" and by_keys["moves"]
    table = run_cli("rebalance", seed, "--use-empty-primaries", "--dry-run")
    assert table.returncode == 0 and "dry run: nothing was changed" in table.stdout

    time.sleep(0.5)
    for address in addresses:
        assert owners_by_slot(topology(address)) == before[address]
        assert migration_records(address) == []
        assert NodeHandle.open(address, 5).info().stats["keys"] == keys_before[address]
    # Without --use-empty-primaries the new node is left alone: nothing to do.
    plan = cli_json("rebalance", seed, "--dry-run")
    assert plan["moves"] == [] and "within 2%" in plan["reason"]


# ---- fix: slots without an owner ---------------------------------------------------------


def test_fix_gives_unowned_slots_to_the_primary_with_fewest(servers: ServerFactory) -> None:
    """A half-formed cluster (some slots never assigned) is completed by fix."""
    nodes = start_nodes(servers, 3, *NODE_TIMEOUT)
    handles = [NodeHandle.open(n.address, 5.0) for n in nodes]
    try:
        plan = [(0, 6999), (7000, 12999)]
        for i, handle in enumerate(handles):
            handle.call("SetConfigEpoch", admin_pb2.SetConfigEpochRequest(config_epoch=i + 1))
        for handle, (start, end) in zip(handles, plan, strict=False):
            ranges = [cache_pb2.SlotRange(start=start, end=end)]
            handle.call("AddSlots", admin_pb2.AddSlotsRequest(ranges=ranges))
        for handle in handles[1:]:
            bus = next(p.bus_address for p in handle.state().peers if "myself" in p.flags)
            handles[0].meet(bus)
        wait_for(lambda: all(h.state().known_nodes == 3 for h in handles) or None, 20, "the meet")
        seed = nodes[0].address
        assert run_cli("check", seed).returncode == 1  # 3384 slots without an owner

        fixed = cli_json("fix", seed)
        (assigned,) = fixed["assigned"]
        assert assigned["address"] == nodes[2].address and assigned["how"] == "AddSlots"
        assert assigned["slots"] == [[13000, 16383]] and assigned["count"] == 3384
        assert "fewest slots" in assigned["reason"]
        assert fixed["ok"] is True and fixed["problems"] == []
        wait_check_passes(seed)

        again = cli_json("fix", seed)
        assert again["actions"] == ["nothing to fix"] and again["ok"] is True
    finally:
        for handle in handles:
            handle.close()
